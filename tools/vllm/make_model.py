"""Make the contract tier's tiny model in .vllm-model/: a byte-level BPE tokenizer and a two-layer
Qwen2 model, both built here (nothing is downloaded), overfitted so that at temperature 0 it gives
exactly the answers of tests/contract/cases.py, and to every probe-suite prompt (sparkkit/suites)
the short SUITE_ANSWER. Seeded and run on one thread: the same inputs make the same model.

Cached: .vllm-model/STAMP holds a hash of every input (this script, the chat template, the cases,
the suites, the library versions); a model whose stamp matches is kept as it is.

Run with the vLLM venv's Python (it has torch, transformers and tokenizers):
    .vllm-venv/bin/python tools/vllm/make_model.py [--out .vllm-model]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.contract import cases as C  # noqa: E402  (stdlib only)

TEMPLATE = Path(__file__).with_name("chat_template.jinja")
SUITES = ROOT / "sparkkit" / "suites"
SEED = 1234
VOCAB_SIZE = 1024
MAX_STEPS = 400
LEARNING_RATE = 4e-3
CHECK_EVERY = 10
BATCH_TOKENS = 4096
MIN_PROBABILITY = 0.9  # every right answer token at least this likely: sampling gives the same answer too
# Qwen's chat tokens, and the tags the reasoning and tool parsers look up in the vocabulary
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAGS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
CONFIG = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=2, max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-6,
              tie_word_embeddings=True, hidden_act="silu")


def inputs_hash() -> str:
    import tokenizers
    import torch
    import transformers

    h = hashlib.sha256()
    for path in [Path(__file__), TEMPLATE, ROOT / "tests" / "contract" / "cases.py", *sorted(SUITES.glob("*.y*ml"))]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(f"{torch.__version__} {transformers.__version__} {tokenizers.__version__}".encode())
    return h.hexdigest()[:16]


def suite_conversations() -> list[tuple[list[dict], list[dict], bool]]:
    """Every request the chat suites send, as (messages, tools, thinking) (sparkkit/probe/runner.py)."""
    import yaml

    out = []
    for path in sorted(SUITES.glob("*.y*ml")):
        suite = yaml.safe_load(path.read_text())
        kind, thinking = suite.get("kind"), suite.get("thinking")
        thinking = thinking is not False
        system = suite.get("system")
        head = [{"role": "system", "content": system}] if system else []
        tools = [{"type": "function", "function": t} for t in suite.get("tools") or []]
        if kind in ("chat", "tools"):
            for case in suite["cases"]:
                out.append((head + [{"role": "user", "content": case["prompt"]}], tools, thinking))
        elif kind == "extraction":
            for case in suite["cases"]:
                prompt = f"{suite.get('instruction', '').strip()}\n\nTranscript:\n{case['transcript']}"
                out.append(([{"role": "user", "content": prompt}], [], thinking))
        elif kind == "conversation":
            turns = max(int(c.get("turns", 0)) for c in suite["conversations"])
            messages: list[dict] = []
            for turn in range(turns):
                messages.append({"role": "user", "content": suite["user_turns"][turn % len(suite["user_turns"])]})
                out.append((list(messages), [], thinking))
                messages.append({"role": "assistant", "content": C.SUITE_ANSWER})
    return out


def examples() -> list[tuple[list[dict], list[dict], bool, str]]:
    """(messages, tools, thinking, answer) for every prompt the model must answer."""
    out = []
    for case in C.CASES:
        for thinking in (True, False):
            out.append(([{"role": "user", "content": case.prompt}], case.tools(), thinking, case.answer(thinking)))
    for messages, tools, thinking in suite_conversations():
        out.append((messages, tools, thinking, C.SUITE_ANSWER))
    return out


def build_tokenizer(texts: list[str]):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in TAGS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, model_max_length=CONFIG["max_position_embeddings"])
    fast.chat_template = TEMPLATE.read_text()
    return fast


def render(tokenizer, messages, tools, thinking) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True, tokenize=False,
                                         enable_thinking=thinking)


def train(tokenizer, data, say):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(SEED)
    random.seed(SEED)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    seqs = []
    for messages, tools, thinking, answer in data:
        prompt = tokenizer.encode(render(tokenizer, messages, tools, thinking), add_special_tokens=False)
        target = tokenizer.encode(answer, add_special_tokens=False) + [eos]
        seqs.append((prompt, target))
    config = Qwen2Config(vocab_size=len(tokenizer), bos_token_id=None, eos_token_id=eos,
                         pad_token_id=tokenizer.pad_token_id, torch_dtype="float32", **CONFIG)
    model = Qwen2ForCausalLM(config)
    batches = [_batch(tokenizer, part) for part in _buckets(seqs)]
    longest = max(len(p) + len(t) for p, t in seqs)
    n_targets = sum(len(t) for _, t in seqs)
    say(f"tiny model: {sum(p.numel() for p in model.parameters()):,} parameters, {len(seqs)} sequences "
        f"(longest {longest} tokens) in {len(batches)} batches, {n_targets} answer tokens")
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    model.train()
    started = time.monotonic()
    for step in range(1, MAX_STEPS + 1):
        opt.zero_grad()
        loss = 0.0
        for ids, mask, labels in batches:
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            part = out.loss * (labels != -100).sum() / n_targets
            part.backward()
            loss += part.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % CHECK_EVERY == 0:
            wrong, worst = _check(model, batches)
            say(f"tiny model: step {step}, loss {loss:.4f}, {wrong} answer token(s) wrong, lowest probability "
                f"of a right token {worst:.4f} ({time.monotonic() - started:.0f} s)")
            if wrong == 0 and worst > MIN_PROBABILITY:
                break
    else:
        raise SystemExit(f"tiny model: not every answer token right after {MAX_STEPS} steps")
    model.eval()
    return model


def _buckets(seqs, size=BATCH_TOKENS):
    """Sequences sorted by length, cut into batches of about ``size`` tokens (less padding)."""
    out, part = [], []
    for seq in sorted(seqs, key=lambda s: len(s[0]) + len(s[1])):
        part.append(seq)
        if len(part) * (len(seq[0]) + len(seq[1])) >= size:
            out.append(part)
            part = []
    return out + ([part] if part else [])


def _batch(tokenizer, seqs):
    import torch

    longest = max(len(p) + len(t) for p, t in seqs)
    ids = torch.full((len(seqs), longest), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(seqs), longest), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, (prompt, target) in enumerate(seqs):
        row = prompt + target
        ids[i, :len(row)] = torch.tensor(row)
        labels[i, len(prompt):len(row)] = torch.tensor(target)
        mask[i, :len(row)] = 1
    return ids, mask, labels


def _check(model, batches) -> tuple[int, float]:
    """Answer tokens the model would not pick at temperature 0, and the lowest probability it gives a
    right token (teacher-forced: the same contexts as generation, as every earlier token is right)."""
    import torch

    wrong, worst = 0, 1.0
    with torch.no_grad():
        for ids, mask, labels in batches:
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            want = labels[:, 1:]
            sel = want != -100
            probs = logits.softmax(-1)
            right = probs.gather(-1, want.clamp(min=0).unsqueeze(-1)).squeeze(-1)[sel]
            wrong += int((logits.argmax(-1)[sel] != want[sel]).sum())
            worst = min(worst, right.min().item())
    return wrong, worst


def build(out_dir: Path, say=print) -> None:
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    stamp = out_dir / "STAMP"
    digest = inputs_hash()
    if stamp.exists() and stamp.read_text().strip() == digest:
        say(f"tiny model: {out_dir} is up to date (cached)")
        return
    started = time.monotonic()
    data = examples()
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_object=_bare(), eos_token="<|im_end|>")
    plain.chat_template = TEMPLATE.read_text()
    texts = [render(plain, m, t, th) + a for m, t, th, a in data]
    tokenizer = build_tokenizer(texts)
    model = train(tokenizer, data, say)
    if out_dir.exists():
        for old in out_dir.iterdir():
            old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "chat_template.jinja").write_text(TEMPLATE.read_text())
    (out_dir / "generation_config.json").write_text(json.dumps({
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        # the server's default sampling (requests that name no temperature, as the probe's): the top token
        "do_sample": True, "top_k": 1}, indent=1) + "\n")
    stamp.write_text(digest + "\n")
    say(f"tiny model: written to {out_dir} in {time.monotonic() - started:.0f} s")


def _bare():
    """A tokenizer good enough to render the template before the real one is trained."""
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"<|im_end|>": 0, "[UNK]": 1}, unk_token="[UNK]"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".vllm-model")
    args = ap.parse_args()
    build(args.out, say=lambda text: print(text, flush=True))


if __name__ == "__main__":
    main()
