"""Export to CTranslate2: the exported model scores and translates exactly like ours."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from tfcli.checkpoint import Checkpoint, save_checkpoint
from tfcli.config import Config, DecodeConfig, ModelConfig, TokenizerConfig
from tfcli.data.batching import collate
from tfcli.data.pairs import make_examples
from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, train_tokenizer
from tfcli.errors import TfcliError
from tfcli.model.transformer import Transformer
from tfcli.translation.export import SOURCE_SPM, TARGET_SPM, export_ctranslate2
from tfcli.translation.search import greedy_search

NUMBERS = ["eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn"]
ENGLISH = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
NOUNS = [
    ("katzen", "cats"),
    ("hunde", "dogs"),
    ("bücher", "books"),
    ("häuser", "houses"),
    ("autos", "cars"),
]
SOURCE = [f"ich sehe {n} {de}" for n in NUMBERS for de, _ in NOUNS]  # 50 sentences
TARGET = [f"i see {n} {en}" for n in ENGLISH for _, en in NOUNS]


@pytest.fixture(scope="module")
def ct2() -> ModuleType:
    """CTranslate2, which the test command installs (the `ctranslate2` extra): a missing one
    is a failure, not a skip."""
    try:
        import ctranslate2
    except ImportError as e:
        pytest.fail(f"ctranslate2 cannot be imported ({e}); pip install -e '.[dev,ctranslate2]'")
    return ctranslate2


@pytest.fixture(scope="module")
def shared_tok() -> Tokenizer:
    return train_tokenizer(SOURCE + TARGET, TokenizerConfig(vocab_size=60))


@pytest.fixture(scope="module")
def split_toks() -> tuple[Tokenizer, Tokenizer]:
    return train_tokenizer(SOURCE, TokenizerConfig(vocab_size=40)), train_tokenizer(
        TARGET, TokenizerConfig(vocab_size=40)
    )


def tiny_config(norm: str = "post", activation: str = "relu", tie: str = "all") -> Config:
    model = ModelConfig(
        d_model=32,
        heads=4,
        d_ff=64,
        encoder_layers=2,
        decoder_layers=2,
        dropout=0.0,
        norm=norm,
        activation=activation,
        tie_embeddings=tie,
        max_positions=64,
    )
    return Config(tokenizer=TokenizerConfig(shared=tie == "all"), model=model)


def perturbed(model: Transformer, seed: int) -> Transformer:
    """Random weights with nonzero biases and layer norms, so every parameter matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def trained(cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, steps: int = 150) -> Transformer:
    """A tiny model fitted to the toy corpus, so its greedy outputs end with EOS."""
    torch.manual_seed(0)
    model = Transformer(cfg.model, len(src_tok), len(tgt_tok))
    examples, _ = make_examples(SOURCE, TARGET, src_tok, tgt_tok)
    batch = collate(examples)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        logits = model(batch.src, batch.tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def export(tmp: Path, cfg: Config, model: Transformer, src: Tokenizer, tgt: Tokenizer) -> Path:
    path = tmp / "checkpoint_last.pt"
    save_checkpoint(path, Checkpoint(model.state_dict(), cfg, src, tgt, step=1))
    return export_ctranslate2(tmp, tmp / "ct2")


def pieces(tok: Tokenizer, ids: list[int]) -> list[str]:
    return [tok.sp.id_to_piece(i) for i in ids]


def collate_sources(src_ids: list[list[int]]) -> torch.Tensor:
    """(B, S) right-padded sources ending in EOS."""
    width = max(len(s) for s in src_ids) + 1
    rows = [s + [EOS_ID] + [PAD_ID] * (width - len(s) - 1) for s in src_ids]
    return torch.tensor(rows)


@pytest.mark.parametrize(
    ("norm", "activation", "tie"), [("post", "relu", "all"), ("pre", "gelu", "none")]
)
def test_scores_match(tmp_path, ct2, shared_tok, split_toks, norm, activation, tie) -> None:
    cfg = tiny_config(norm, activation, tie)
    src_tok, tgt_tok = (shared_tok, shared_tok) if tie == "all" else split_toks
    model = perturbed(Transformer(cfg.model, len(src_tok), len(tgt_tok)), seed=1)
    out = export(tmp_path, cfg, model, src_tok, tgt_tok)
    translator = ct2.Translator(str(out), device="cpu", intra_threads=1)
    src_ids, tgt_ids = src_tok.encode(SOURCE[:6]), tgt_tok.encode(TARGET[10:16])
    results = translator.score_batch(
        [pieces(src_tok, s) for s in src_ids], [pieces(tgt_tok, t) for t in tgt_ids]
    )
    for s, t, result in zip(src_ids, tgt_ids, results):
        with torch.no_grad():
            logits = model(torch.tensor([s + [EOS_ID]]), torch.tensor([[BOS_ID] + t]))[0]
        gold = torch.tensor(t + [EOS_ID])
        ours = F.log_softmax(logits, -1).gather(1, gold[:, None]).squeeze(1)  # (T,)
        theirs = torch.tensor(result.log_probs)
        assert theirs.shape == ours.shape
        torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)


def test_greedy_outputs_match(tmp_path, ct2, shared_tok) -> None:
    cfg = tiny_config()
    model = trained(cfg, shared_tok, shared_tok)
    out = export(tmp_path, cfg, model, shared_tok, shared_tok)
    translator = ct2.Translator(str(out), device="cpu", intra_threads=1)
    lines = SOURCE[::6] + ["ich sehe zehn hunde und acht autos"]
    src_ids = shared_tok.encode(lines)
    results = translator.translate_batch(
        [pieces(shared_tok, s) for s in src_ids],
        beam_size=1,
        max_decoding_length=40,
        suppress_sequences=[["<pad>"], ["<s>"]],  # tfcli.search never produces PAD or BOS
    )
    ours = greedy_search(
        model, collate_sources(src_ids), DecodeConfig(beam=1, max_len_a=0.0, max_len_b=41)
    )
    for hyps, result in zip(ours, results):
        assert result.hypotheses[0] == pieces(shared_tok, hyps[0].tokens)
    # The model learnt the corpus, so outputs end with EOS and are not degenerate.
    assert all(len(h[0].tokens) < 40 for h in ours)
    decoded = [shared_tok.decode(h[0].tokens) for h in ours[:-1]]
    assert sum(d == t for d, t in zip(decoded, TARGET[::6])) >= len(decoded) // 2


def test_export_is_self_contained_and_quantizes(tmp_path, ct2, shared_tok) -> None:
    cfg = tiny_config()
    model = perturbed(Transformer(cfg.model, len(shared_tok), len(shared_tok)), seed=2)
    save_checkpoint(tmp_path / "m.pt", Checkpoint(model.state_dict(), cfg, shared_tok, shared_tok))
    out = export_ctranslate2(tmp_path / "m.pt", tmp_path / "int8", quantization="int8")
    assert Tokenizer.load(out / SOURCE_SPM).model_bytes == shared_tok.model_bytes
    assert Tokenizer.load(out / TARGET_SPM).model_bytes == shared_tok.model_bytes
    translator = ct2.Translator(str(out), device="cpu", compute_type="int8")
    result = translator.translate_batch([shared_tok.pieces(SOURCE[0])], max_decoding_length=5)
    assert len(result[0].hypotheses[0]) <= 5
    export_ctranslate2(tmp_path / "m.pt", out)  # an earlier export may be replaced


def test_refuses_a_directory_with_other_files(tmp_path, ct2, shared_tok) -> None:
    cfg = tiny_config()
    model = Transformer(cfg.model, len(shared_tok), len(shared_tok))
    save_checkpoint(tmp_path / "m.pt", Checkpoint(model.state_dict(), cfg, shared_tok, shared_tok))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(TfcliError, match="not empty"):
        export_ctranslate2(tmp_path / "m.pt", tmp_path / "notes")
    with pytest.raises(TfcliError, match="quantization"):
        export_ctranslate2(tmp_path / "m.pt", tmp_path / "q", quantization="int3")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "ctranslate2.converters", None)
    with pytest.raises(TfcliError, match=r"pip install 'tfcli\[ctranslate2\]'"):
        export_ctranslate2(tmp_path / "m.pt", tmp_path / "out")
