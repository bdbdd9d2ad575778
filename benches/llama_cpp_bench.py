"""The llama.cpp side of benches/inference, through llama-cpp-python's low-level API.

    python benches/llama_cpp_bench.py --model GGUF --ids IDS.json [--text TEXT.txt]
        [--tokens 64] [--threads 2] [--warmup 1]

Loads the GGUF (not timed), then runs the given prompt ids greedily: the prompt as one
batch through llama_decode (logits for its last position only) and llama.cpp's own greedy
sampler, then one token at a time, a fixed number of tokens whatever they are. Prompt
time = the prompt batch and the first token; generation time = the remaining tokens (the
same split as candle-plain and the Veil runtime). A warm-up run comes first; the KV cache
is cleared between runs. With --text, also tokenises the rendered prompt with llama.cpp's
tokenizer (special tokens parsed, nothing added) and reports whether its ids are the given
ones. Prints one JSON line.
"""

import argparse
import ctypes
import json
import os
import time

import llama_cpp as L


def fn(*names):
    """The first of `names` this llama-cpp-python exports (the API renamed things)."""
    for n in names:
        f = getattr(L, n, None)
        if f is not None:
            return f
    raise AttributeError(" / ".join(names))


def tokenize(vocab, text):
    raw = text.encode()
    buf = (L.llama_token * (len(raw) + 16))()
    n = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, True)
    if n < 0:
        raise RuntimeError("tokenize: buffer too small")
    return list(buf[:n])


def piece(vocab, tok):
    buf = ctypes.create_string_buffer(256)
    n = L.llama_token_to_piece(vocab, tok, buf, len(buf), 0, False)
    return buf.raw[: max(n, 0)]


def clear(ctx):
    if hasattr(L, "llama_get_memory") and hasattr(L, "llama_memory_clear"):
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
    else:
        fn("llama_kv_self_clear", "llama_kv_cache_clear")(ctx)


def decode_prompt(ctx, batch, ids):
    """The prompt `ids` as one batch at positions 0.., logits for the last one only."""
    batch.n_tokens = len(ids)
    for i, t in enumerate(ids):
        batch.token[i] = t
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1 if i == len(ids) - 1 else 0
    if L.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed on the prompt")


def run(ctx, sampler, batch, ids, n):
    clear(ctx)
    L.llama_sampler_reset(sampler)
    t0 = time.perf_counter()
    decode_prompt(ctx, batch, ids)
    nxt = L.llama_sampler_sample(sampler, ctx, -1)
    prompt_s = time.perf_counter() - t0
    out = [nxt]
    t1 = time.perf_counter()
    while len(out) < n:
        batch.n_tokens = 1
        batch.token[0] = nxt
        batch.pos[0] = len(ids) + len(out) - 1
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = 1
        if L.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        nxt = L.llama_sampler_sample(sampler, ctx, -1)
        out.append(nxt)
    return out, prompt_s, time.perf_counter() - t1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--text")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    ids = json.load(open(a.ids))

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    model = fn("llama_model_load_from_file", "llama_load_model_from_file")(a.model.encode(), mp)
    if not model:
        raise RuntimeError("model load failed")
    cp = L.llama_context_default_params()
    cp.n_ctx = 512
    cp.n_batch = 512
    cp.n_ubatch = 512
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    ctx = fn("llama_init_from_model", "llama_new_context_with_model")(model, cp)
    vocab = L.llama_model_get_vocab(model)
    sampler = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(sampler, L.llama_sampler_init_greedy())
    batch = L.llama_batch_init(512, 0, 1)

    for _ in range(a.warmup):
        run(ctx, sampler, batch, ids, a.tokens)
    out, prompt_s, gen_s = run(ctx, sampler, batch, ids, a.tokens)

    eog = [i for i, t in enumerate(out) if L.llama_vocab_is_eog(vocab, t)]
    text = b"".join(piece(vocab, t) for t in out if not L.llama_vocab_is_eog(vocab, t)).decode(errors="replace")
    res = {
        "engine": "llama.cpp",
        "llama_cpp_python": L.__version__,
        "threads": a.threads,
        "prompt_tokens": len(ids),
        "prompt_s": prompt_s,
        "gen_tokens": len(out) - 1,
        "gen_s": gen_s,
        "prompt_tps": len(ids) / prompt_s,
        "gen_tps": (len(out) - 1) / gen_s,
        "total_tokens": len(out),
        "first_end_of_sequence": eog[0] if eog else None,
        "tokens": out,
        "text": text,
        "system_info": L.llama_print_system_info().decode(errors="replace"),
    }
    if a.text:
        mine = tokenize(vocab, open(a.text).read())
        res["tokenize_match"] = mine == ids
        if mine != ids:
            res["llama_ids"] = mine
    L.llama_batch_free(batch)
    L.llama_sampler_free(sampler)
    L.llama_free(ctx)
    fn("llama_model_free", "llama_free_model")(model)
    print(json.dumps(res))
    # Skip interpreter teardown (ggml's OpenMP threads).
    os._exit(0)


if __name__ == "__main__":
    main()
