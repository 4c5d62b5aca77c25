"""What the CLI commands do, between parsing arguments and printing results."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from tfcli.errors import DataError, TfcliError


def resolve_run(model: Path | None, err: Console) -> Path:
    """The run or checkpoint given with -m, else the most recently trained run (said on stderr)."""
    if model is not None:
        return model
    from tfcli.checkpoint import latest_run

    run = latest_run()
    err.print(f"using the latest run: {run}", highlight=False)
    return run


def read_input(text: list[str] | None, input_file: Path | None) -> list[str]:
    """Lines to translate: the arguments, else --input, else stdin."""
    from tfcli.data import read_lines, split_lines

    if text:
        if input_file is not None:
            raise TfcliError("give sentences as arguments or with --input, not both")
        return [line for arg in text for line in (arg.split("\n") if arg else [""])]
    if input_file is not None:
        return read_lines(input_file)
    if sys.stdin is None:
        raise DataError("no input: give sentences as arguments, --input FILE, or lines on stdin")
    return split_lines(sys.stdin.buffer.read(), "stdin")


def write_output(lines: list[str], output: Path | None) -> None:
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise DataError(f"{output}: cannot write ({e.strerror})") from None


def translate_command(
    text: list[str] | None,
    model: Path | None,
    input_file: Path | None,
    output: Path | None,
    beam: int | None,
    n_best: int | None,
    batch_tokens: int | None,
    device: str,
    err: Console,
    precision: str = "fp32",
    compile: bool = False,
) -> None:
    """Translate lines; with n-best, print `line-number<TAB>translation<TAB>score` rows,
    n of them for every input line."""
    from tfcli.translate import load_translator

    lines = read_input(text, input_file)
    if n_best is not None and beam is None:
        beam = max(n_best, 4)
    translator = load_translator(
        resolve_run(model, err),
        device,
        precision,
        compile,
        beam=beam,
        n_best=n_best,
        batch_tokens=batch_tokens,
    )
    if n_best is None or n_best == 1:
        write_output(translator.translate(lines), output)
        return
    blank = [_empty()] * translator.decode.n_best  # an empty line: n empty translations
    rows = [
        f"{n}\t{hyp.text}\t{hyp.score:.4f}"
        for n, hyps in enumerate(translator.translate_nbest(lines), start=1)
        for hyp in (hyps or blank)
    ]
    write_output(rows, output)


def _empty():
    from tfcli.translate import TextHypothesis

    return TextHypothesis("", 0.0, [])


def eval_command(
    model: Path | None,
    src: Path,
    ref: Path,
    hyp_out: Path | None,
    beam: int | None,
    device: str,
    err: Console,
):
    """Translate `src`, write the hypotheses if asked, and score them against `ref`."""
    from tfcli.data import read_parallel
    from tfcli.evaluate import score
    from tfcli.translate import load_translator

    src_lines, ref_lines = read_parallel(src, ref)
    translator = load_translator(resolve_run(model, err), device, beam=beam)
    hyps = translator.translate(src_lines)
    if hyp_out is not None:
        write_output(hyps, hyp_out)
    return score(hyps, ref_lines)


def export_command(
    model: Path | None, format_: str, out_dir: Path, quantization: str | None, err: Console
) -> Path:
    if format_ != "ctranslate2":
        raise TfcliError(f"--format: {format_!r} is not a known export format; use ctranslate2")
    from tfcli.export import export_ctranslate2

    return export_ctranslate2(resolve_run(model, err), out_dir, quantization)
