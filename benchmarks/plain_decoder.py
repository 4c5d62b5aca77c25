"""The plain decoder of bench_translate.py: beam search written without any of tfcli's decoding
speed work, as a first PyTorch implementation would have it.

- no key/value cache: every step runs the decoder over the whole prefix (and so projects the
  encoder output to cross-attention keys/values again, in every layer);
- the encoder output copied for every beam;
- the whole batch decodes until its last sentence has finished: a hypothesis that has ended
  stays in its beam and is extended with PAD at no cost;
- the length penalty (GNMT's, as tfcli) applied to the finished beams at the end.

It works on whole batches with tensor operations (no Python loop per hypothesis). Because
ended hypotheses keep their beam slots and are compared unnormalized while searching, its
outputs can differ from tfcli.search's, which sets finished hypotheses aside as fairseq does.
"""

from __future__ import annotations

import torch

from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tfcli.model.transformer import Transformer
from tfcli.translation.search import constrain, length_penalty


@torch.inference_mode()
def plain_beam_search(
    model: Transformer, src: torch.Tensor, beam: int, alpha: float, max_len: int
) -> list[list[int]]:
    """src (B, S) -> the best output ids per sentence (EOS excluded); beam 1 is greedy search.

    max_len: the longest output, EOS included, for the whole batch.
    """
    b, k, device = src.size(0), beam, src.device
    memory, src_mask = model.encode(src)  # (B, S, D)
    memory = memory.repeat_interleave(k, 0)  # (B*K, S, D): one copy per beam
    src_mask = src_mask.repeat_interleave(k, 0)
    seqs = torch.full((b * k, 1), BOS_ID, dtype=torch.long, device=device)  # (B*K, t)
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = float("-inf")  # at the first step only one beam is real
    ended = torch.zeros(b * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(b * k, device=device)  # output length, EOS included
    for step in range(max_len):
        last_step = torch.tensor(step + 1 == max_len, device=device)  # it may only end
        logits = model.decode(seqs, memory, src_mask)[:, -1].float()  # (B*K, V)
        logprobs = constrain(torch.log_softmax(logits, -1), last_step.expand(b * k))
        vocab = logprobs.size(-1)
        logprobs[ended] = float("-inf")
        logprobs[ended, PAD_ID] = 0.0  # an ended hypothesis is only padded
        cand = (scores.view(-1, 1) + logprobs).view(b, k * vocab)  # (B, K*V)
        scores, top = cand.topk(k, dim=1)  # (B, K)
        rows = (torch.arange(b, device=device)[:, None] * k + top // vocab).view(-1)  # (B*K,)
        token = (top % vocab).view(-1)
        seqs = torch.cat([seqs[rows], token[:, None]], 1)  # (B*K, t+1)
        lengths = lengths[rows] + (~ended[rows]).float()
        ended = ended[rows] | (token == EOS_ID)
        if bool(ended.all()):
            break
    penalty = length_penalty(lengths, alpha)  # (B*K,)
    best = (scores.view(-1) / penalty).view(b, k).argmax(1)  # (B,)
    out = []
    for ids in seqs.view(b, k, -1)[torch.arange(b, device=device), best, 1:].tolist():
        out.append([i for i in ids if i not in (EOS_ID, PAD_ID)])
    return out
