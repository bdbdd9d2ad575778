"""llama.cpp's next-token logits for SmolLM2, recorded once as a test fixture (run by
scripts/llama-ref), so that the Rust tests can compare against llama.cpp without it.

    python scripts/llama_ref.py GGUF OUT.json

For each prompt below (rendered with the model's ChatML template; tokenised by llama.cpp
with special tokens parsed and nothing added, no BOS), it records the token ids, the top
TOP_K (id, logit) of the last prompt position, sorted by logit descending (ties by id),
and the greedy continuation: GREEDY tokens, each the argmax of the logits (lowest id on a
tie), the top 5 (id, logit) at every step, and the text up to the first end-of-generation
token. All GREEDY tokens are recorded even past an end-of-generation token.

Deterministic set-up: one thread, a fresh context per prompt, the prompt as one batch
(llama_decode, logits for its last position only), then one token at a time; flash
attention off and an f32 KV cache (llama.cpp's default is f16, which also rounds the
queries and the attention weights to f16 and moves the logits by up to ~0.4 here; f32 is
what an f32 implementation compares against); llama.cpp's CPU weight repacking as
default. The settings are recorded under "config". The logits are float32, written as
the shortest decimal that reads back as the same float32. llama.cpp's own log goes to
stderr only for warnings and errors.

The helpers (tokenize, piece, fn, decode_prompt) are benches/llama_cpp_bench.py's.
"""

import ctypes
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches"))
import llama_cpp as L  # noqa: E402
from llama_cpp_bench import decode_prompt, fn, piece, tokenize  # noqa: E402

TOP_K = 20
STEP_TOP_K = 5
GREEDY = 16
N_CTX = 512
THREADS = 1

PROMPTS = [
    (
        "capital",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    (
        "story",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWrite a short story about a lighthouse keeper who finds a message in a bottle.<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
]

GGML_TYPES = {getattr(L, n): n[len("GGML_TYPE_"):] for n in dir(L) if n.startswith("GGML_TYPE_") and n != "GGML_TYPE_COUNT"}


def f32(x):
    """The shortest decimal that reads back as this float32."""
    return float(str(np.float32(x)))


# ggml's log levels: 3 warn, 4 error, 5 continuation of the previous message.
_last_level = [0]


@L.llama_log_callback
def _log(level, text, _user):
    if level != 5:
        _last_level[0] = level
    if _last_level[0] in (3, 4):
        sys.stderr.write(text.decode(errors="replace"))


def top(logits, k):
    # Stable sort on -logit: equal logits keep id order.
    order = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), f32(logits[i])] for i in order]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def decode_one(ctx, batch, tok, pos, last):
    batch.n_tokens = 1
    batch.token[0] = tok
    batch.pos[0] = pos
    batch.n_seq_id[0] = 1
    batch.seq_id[0][0] = 0
    batch.logits[0] = 1 if last else 0
    if L.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed")


def record(model, vocab, n_vocab, name, text):
    cp = L.llama_context_default_params()
    cp.n_ctx = N_CTX
    cp.n_batch = N_CTX
    cp.n_ubatch = N_CTX
    cp.n_threads = THREADS
    cp.n_threads_batch = THREADS
    cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    cp.type_k = L.GGML_TYPE_F32
    cp.type_v = L.GGML_TYPE_F32
    # A fresh context per prompt: nothing carries over from the previous one.
    ctx = fn("llama_init_from_model", "llama_new_context_with_model")(model, cp)
    if not ctx:
        raise RuntimeError("context creation failed")
    config = {
        "n_threads": THREADS,
        "n_ctx": N_CTX,
        "n_batch": N_CTX,
        "n_ubatch": N_CTX,
        "flash_attn": "disabled",
        "type_k": GGML_TYPES.get(cp.type_k, cp.type_k),
        "type_v": GGML_TYPES.get(cp.type_v, cp.type_v),
    }
    ids = tokenize(vocab, text)
    batch = L.llama_batch_init(N_CTX, 0, 1)
    decode_prompt(ctx, batch, ids)

    def logits():
        p = L.llama_get_logits_ith(ctx, -1)
        return np.ctypeslib.as_array(p, shape=(n_vocab,)).astype(np.float32).copy()

    first = logits()
    if not np.all(np.isfinite(first)):
        raise RuntimeError("non-finite logits")
    out, steps, cur = [], [], first
    for step in range(GREEDY):
        tok = int(np.argmax(cur))  # the first maximum: lowest id on a tie
        out.append(tok)
        steps.append(top(cur, STEP_TOP_K))
        if step + 1 < GREEDY:
            decode_one(ctx, batch, tok, len(ids) + step, True)
            cur = logits()
    eog = [i for i, t in enumerate(out) if L.llama_vocab_is_eog(vocab, t)]
    end = eog[0] if eog else len(out)
    cont = b"".join(piece(vocab, t) for t in out[:end]).decode(errors="replace")
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    return config, {
        "name": name,
        "text": text,
        "ids": ids,
        "top": top(first, TOP_K),
        "greedy": {
            "ids": out,
            "first_end_of_generation": eog[0] if eog else None,
            "text": cont,
            "top5": steps,
        },
    }


def dumps(obj):
    """JSON with indent 1, but every list of scalars on one line."""

    def enc(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            items = [f'{pad} {json.dumps(k)}: {enc(v, ind + 1)}' for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list):
            if all(not isinstance(x, (dict, list)) for x in o):
                return "[" + ", ".join(json.dumps(x) for x in o) + "]"
            if all(isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x) for x in o):
                # A list of pairs: five per line.
                if len(o) <= 5:
                    return "[" + ", ".join(enc(x, 0) for x in o) + "]"
                rows = [", ".join(enc(x, 0) for x in o[i : i + 5]) for i in range(0, len(o), 5)]
                return "[\n" + ",\n".join(f"{pad} {r}" for r in rows) + "\n" + pad + "]"
            return "[\n" + ",\n".join(f"{pad} {enc(x, ind + 1)}" for x in o) + "\n" + pad + "]"
        return json.dumps(o, ensure_ascii=False)

    return enc(obj, 0) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: llama_ref.py GGUF OUT.json")
    gguf, out_path = sys.argv[1:]
    L.llama_log_set(_log, None)
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = fn("llama_model_load_from_file", "llama_load_model_from_file")(gguf.encode(), mp)
    if not model:
        raise RuntimeError(f"model load failed: {gguf}")
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    config, prompts = None, []
    for name, text in PROMPTS:
        config, rec = record(model, vocab, n_vocab, name, text)
        prompts.append(rec)
    desc = ctypes.create_string_buffer(256)
    L.llama_model_desc(model, desc, len(desc))
    res = {
        "engine": "llama.cpp",
        "llama_cpp_python": L.__version__,
        "system_info": L.llama_print_system_info().decode(errors="replace").strip(),
        "gguf": os.path.basename(gguf),
        "gguf_sha256": sha256(gguf),
        "model_desc": desc.value.decode(errors="replace"),
        "n_vocab": n_vocab,
        "config": dict(config, add_bos=False, parse_special=True, greedy_tokens=GREEDY),
        "prompts": prompts,
    }
    fn("llama_model_free", "llama_free_model")(model)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(res))
    os.replace(tmp, out_path)
    for p in prompts:
        print(f"{res['gguf']} {p['name']}: {len(p['ids'])} prompt ids, top {p['top'][:3]}, "
              f"greedy {p['greedy']['text']!r}", file=sys.stderr)
    sys.stderr.flush()
    # Skip interpreter teardown (ggml's OpenMP threads), as the bench does.
    os._exit(0)


if __name__ == "__main__":
    main()
