from tfcli.cli import app

if __name__ == "__main__":  # not when a worker process imports it (multiprocessing spawn)
    app(prog_name="tfcli")
