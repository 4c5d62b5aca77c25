from tfcli.cli import app

app(prog_name="tfcli")
