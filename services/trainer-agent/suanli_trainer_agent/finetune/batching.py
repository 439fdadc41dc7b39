"""How a step's examples become one forward pass and its loss. The obvious way (what transformers'
Trainer does) pads them into a batch and passes `labels=`; two exact shortcuts do less work:

- logits only where a token is learned: the vocabulary projection and its softmax are about a fifth
  of a small model's work, and most positions are prompt or padding (the decoder's hidden states
  at the learned positions only, through the output head);
- packing: the examples side by side in one row, positions restarting at 0 for each, so no work goes
  to padding; transformers reads the restarts as separate sequences and keeps attention within each
  (masking_utils.find_packed_sequence_indices). Chosen per step where it costs less: its attention
  grows with the square of the whole row.

A probe at start compares each shortcut's logits with the plain forward's on two made-up examples;
a model (or transformers version) that does not honour one trains without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from suanli_trainer_agent.finetune.data import IGNORE_INDEX, TokenizedExample


@dataclass(slots=True)
class Batch:
    input_ids: torch.Tensor
    # The token each position predicts (its label's successor); IGNORE_INDEX where none is learned.
    targets: torch.Tensor
    attention_mask: torch.Tensor | None  # padded batches
    position_ids: torch.Tensor | None  # packed rows
    tokens: int  # tokens that are not padding

    def inputs(self, device: torch.device) -> dict[str, Any]:
        # No KV cache: transformers reads packed rows only when there is none (and it costs memory).
        out: dict[str, Any] = {"input_ids": self.input_ids.to(device), "use_cache": False}
        if self.attention_mask is not None:
            out["attention_mask"] = self.attention_mask.to(device)
        if self.position_ids is not None:
            out["position_ids"] = self.position_ids.to(device)
        return out


def _next_tokens(example: TokenizedExample) -> list[int]:
    return [*example.labels[1:], IGNORE_INDEX]


def pad(examples: list[TokenizedExample], pad_id: int) -> Batch:
    """One row per example, padded on the right to the longest."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        targets[row, :n] = torch.tensor(_next_tokens(example))
        mask[row, :n] = 1
    return Batch(ids, targets, mask, None, tokens=int(mask.sum()))


def pack(examples: list[TokenizedExample]) -> Batch:
    """All examples in one row, each with positions from 0 (which is what keeps them apart)."""
    ids = [t for e in examples for t in e.input_ids]
    targets = [t for e in examples for t in _next_tokens(e)]
    positions = [p for e in examples for p in range(len(e.input_ids))]
    return Batch(
        torch.tensor([ids]),
        torch.tensor([targets]),
        None,
        torch.tensor([positions]),
        tokens=len(ids),
    )


@dataclass(frozen=True, slots=True)
class Shortcuts:
    """What this model honours (found by `probe`), and what packing's attention costs on it."""

    keep_logits: bool
    packing: bool
    # Attention work per (query, key) pair over one token's work through the weights (both in MACs).
    attention_weight: float = 0.0

    def batch(self, examples: list[TokenizedExample], pad_id: int) -> Batch:
        if self.packing and len(examples) > 1:
            lengths = [len(e.input_ids) for e in examples]
            width, total = max(lengths), sum(lengths)
            padded = len(lengths) * width * (1 + self.attention_weight * width)
            packed = total * (1 + self.attention_weight * total)
            if packed < padded:
                return pack(examples)
        return pad(examples, pad_id)


def loss_sum(
    model: Any, batch: Batch, shortcuts: Shortcuts, device: torch.device
) -> tuple[torch.Tensor, int]:
    """The summed cross-entropy of the learned tokens, and how many there are (transformers' causal-LM
    loss is this sum over the count)."""
    keep = batch.targets != IGNORE_INDEX
    if shortcuts.keep_logits:
        logits = kept_logits(model, batch, keep, device)  # (learned, vocab)
        targets = batch.targets[keep]
    else:
        logits = model(**batch.inputs(device)).logits.flatten(0, 1)
        targets = batch.targets.flatten()
    # float(): under autocast the logits are bf16; the loss wants full precision (as transformers').
    loss = F.cross_entropy(logits.float(), targets.to(device), ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int(keep.sum())


def kept_logits(model: Any, batch: Batch, keep: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The logits of the kept positions only: the decoder's hidden states there, through the output
    head. (transformers' own `logits_to_keep` takes a per-row mask in some releases and not in
    others; the decoder and the head are there in every causal LM, a peft-wrapped one too.)"""
    hidden = model.get_decoder()(**batch.inputs(device)).last_hidden_state
    return model.get_output_embeddings()(hidden[keep.to(device)])


# ---- the probe ------------------------------------------------------------------------------------


def probe(model: Any, device: torch.device) -> Shortcuts:
    """Runs both shortcuts on two short made-up examples and keeps those whose logits match the
    plain forward's (no gradients, eval mode, a few tokens: milliseconds)."""
    vocab = int(model.get_input_embeddings().weight.shape[0])
    first = TokenizedExample([(11 * i + 3) % vocab for i in range(6)], [0] * 6)
    second = TokenizedExample([(7 * i + 5) % vocab for i in range(4)], [0] * 4)
    # fp32 weights compare closely; quantized or half-precision ones round differently per layout.
    exact = all(p.dtype == torch.float32 for p in model.parameters())
    tolerance = 1e-3 if exact else 3e-2
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = [model(**pad([e], pad_id=0).inputs(device)).logits[0] for e in (first, second)]
            keep_logits = _keeps_logits(model, [first, second], alone, device, tolerance)
            packing = _packs(model, [first, second], alone, device, tolerance)
    finally:
        model.train(was_training)
    return Shortcuts(keep_logits, packing, attention_weight(model) if packing else 0.0)


def _close(got: torch.Tensor, want: torch.Tensor, tolerance: float) -> bool:
    if got.shape != want.shape:
        return False
    return float((got.float() - want.float()).abs().max()) <= tolerance * (
        1 + float(want.float().abs().max())
    )


def _keeps_logits(
    model: Any,
    examples: list[TokenizedExample],
    alone: list[torch.Tensor],
    device: torch.device,
    tolerance: float,
) -> bool:
    batch = pad(examples, pad_id=0)
    keep = torch.zeros_like(batch.input_ids, dtype=torch.bool)
    keep[0, 1:4] = True
    keep[1, 0] = keep[1, 2] = True
    want = torch.cat([alone[0][1:4], alone[1][[0, 2]]])
    try:
        got = kept_logits(model, batch, keep, device)
    except Exception:  # no decoder or head to reach: this model has no such shortcut
        return False
    # A model whose forward does more than the head (logit scaling, soft-capping) differs here.
    return _close(got, want, tolerance)


def _packs(
    model: Any,
    examples: list[TokenizedExample],
    alone: list[torch.Tensor],
    device: torch.device,
    tolerance: float,
) -> bool:
    batch = pack(examples)
    try:
        got = model(**batch.inputs(device)).logits[0]
    except Exception:  # a model that refuses position_ids without a mask: no packing
        return False
    split = len(examples[0].input_ids)
    return _close(got[:split], alone[0], tolerance) and _close(got[split:], alone[1], tolerance)


def attention_weight(model: Any) -> float:
    """2 x layers x heads x head_dim (the QK and AV multiply-adds per query-key pair) over the
    weights (about the multiply-adds per token); 1.0, which rules packing out, if the config
    does not say."""
    config = model.config
    try:
        layers, hidden, heads = config.num_hidden_layers, config.hidden_size, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
    except AttributeError:
        return 1.0
    weights = sum(p.numel() for p in model.parameters())
    return 2 * layers * heads * head_dim / max(1, weights)
