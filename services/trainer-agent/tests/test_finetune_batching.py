"""A step's batches (finetune/batching.py): every layout gives the loss and gradients transformers
computes from `labels=` on the padded batch (what its Trainer trains on), the probe finds both
shortcuts on a model that honours them and drops each one a model ignores, and packing is chosen
where it costs less."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# Before the imports: without the finetune extra there is no torch.
pytest.importorskip("peft", reason="the finetune extra is not installed")

import torch

from suanli_trainer_agent.finetune.batching import (
    Shortcuts,
    attention_weight,
    loss_sum,
    pad,
    probe,
)
from suanli_trainer_agent.finetune.data import IGNORE_INDEX, TokenizedExample

CPU = torch.device("cpu")
LAYOUTS = {
    "padded": Shortcuts(keep_logits=False, packing=False),
    "padded, logits where learned": Shortcuts(keep_logits=True, packing=False),
    "packed": Shortcuts(keep_logits=False, packing=True),
    "packed, logits where learned": Shortcuts(keep_logits=True, packing=True),
}


def example(length: int, learned_from: int) -> TokenizedExample:
    ids = list(range(3, 3 + length))
    return TokenizedExample(ids, [IGNORE_INDEX] * learned_from + ids[learned_from:])


def load(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    return model


def test_every_layout_gives_the_loss_and_gradients_of_labels(
    tiny_model_dir: Path, identity_file: Path
) -> None:
    from transformers import AutoTokenizer

    from suanli_trainer_agent.finetune.data import load_conversations, tokenize_all

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples, _ = tokenize_all(tokenizer, load_conversations(identity_file), 2048)
    model = load(tiny_model_dir)
    pad_id = tokenizer.pad_token_id
    for chunk in (examples[:4], examples[16:20]):  # the last ones differ most in length
        batch = pad(chunk, pad_id)
        labels = torch.full_like(batch.input_ids, IGNORE_INDEX)
        for row, e in enumerate(chunk):
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
        model.zero_grad()
        want = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
        want.backward()
        want_grad = model.lm_head.weight.grad.clone()
        for name, shortcuts in LAYOUTS.items():
            model.zero_grad()
            summed, n = loss_sum(model, shortcuts.batch(chunk, pad_id), shortcuts, CPU)
            (summed / n).backward()
            assert float(summed.detach() / n) == pytest.approx(float(want), rel=1e-5), name
            assert torch.allclose(model.lm_head.weight.grad, want_grad, atol=1e-6), name
    assert LAYOUTS["packed"].batch(examples[16:20], pad_id).position_ids is not None


class DropsKeyword(torch.nn.Module):
    """A model that ignores one keyword (as models without the shortcut do)."""

    def __init__(self, inner: Any, keyword: str) -> None:
        super().__init__()
        self.inner, self.keyword, self.config = inner, keyword, inner.config

    def get_input_embeddings(self) -> Any:
        return self.inner.get_input_embeddings()

    def forward(self, **kwargs: Any) -> Any:
        kwargs.pop(self.keyword, None)
        return self.inner(**kwargs)


class ScalesLogits(DropsKeyword):
    """A model whose forward scales its logits after the head (as Cohere's and Gemma's do)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, "")

    def get_decoder(self) -> Any:
        return self.inner.get_decoder()

    def get_output_embeddings(self) -> Any:
        return self.inner.get_output_embeddings()

    def forward(self, **kwargs: Any) -> Any:
        out = self.inner(**kwargs)
        out.logits = out.logits * 0.5
        return out


def test_the_probe_keeps_what_the_model_honours(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir)
    model.train()
    assert probe(model, CPU) == Shortcuts(True, True, attention_weight(model))
    assert model.training  # put back as it was
    # Restarted positions that are ignored would let examples attend to each other.
    assert probe(DropsKeyword(model, "position_ids"), CPU).packing is False
    # A forward that does more than decoder + head (soft-capping, say) cannot be shortcut.
    assert probe(ScalesLogits(model), CPU).keep_logits is False


def test_packing_is_chosen_where_it_costs_less() -> None:
    short, long = example(10, 4), example(50, 20)
    packed = Shortcuts(True, True, attention_weight=1e-4).batch([short, long], pad_id=0)
    assert packed.input_ids.shape == (1, 60) and packed.attention_mask is None and packed.tokens == 60
    assert packed.position_ids is not None
    assert packed.position_ids[0].tolist() == [*range(10), *range(50)]
    # Each example predicts its own next tokens; nothing crosses from one example into the next.
    assert packed.targets[0].tolist() == [*short.labels[1:], IGNORE_INDEX, *long.labels[1:], IGNORE_INDEX]
    # Little padding to save, and attention over the whole row costs more: padded.
    other = example(45, 20)
    padded = Shortcuts(True, True, attention_weight=1e-2).batch([other, long], pad_id=0)
    assert padded.input_ids.shape == (2, 50) and padded.tokens == 95 and padded.position_ids is None
    assert (
        Shortcuts(True, True, attention_weight=1e-4).batch([other, long], pad_id=0).position_ids is not None
    )
    assert Shortcuts(True, False).batch([short, long], pad_id=0).input_ids.shape == (2, 50)
    assert Shortcuts(True, True).batch([long], pad_id=0).position_ids is None
