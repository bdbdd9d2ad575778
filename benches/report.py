"""benches/RESULTS.md and its charts from the raw figures benches/run collects.

    report.py RESULTS_DIR CHARTS_DIR OUT_MD

Every figure is a median over repeated runs with its min and max, the peer's figure from
the same run beside it, and the ratio; the bars of DESIGN.md section 9 are checked at the
end, each met or not met with the reason.
"""

import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RES, CHARTS, OUT = sys.argv[1:4]
med = statistics.median


def jl(name):
    path = os.path.join(RES, name)
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []


def stat(xs):
    xs = list(xs)
    return med(xs), min(xs), max(xs)


def fmt(t, digits=1, unit=""):
    m, lo, hi = t
    return f"{m:.{digits}f}{unit} ({lo:.{digits}f}–{hi:.{digits}f})"


def chart(name):
    path = os.path.join(CHARTS, name)
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close("all")
    return f"![{name}](charts/{name})"


def errbars(stats):
    m = [s[0] for s in stats]
    return m, [[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]]


machine = json.load(open(os.path.join(RES, "machine.json")))
lines = []
out = lines.append
bars = []  # (bar, figure, met, note)

out(f"# Veil benchmark results ({machine['date']})")
out("")
out(f"**Machine:** {machine['cpu']}, {machine['cores']} cores"
    f"{' (virtual machine)' if machine['virtualised'] else ''}, {machine['mem_gib']} GiB, Linux {machine['kernel']}, "
    f"SIMD {', '.join(machine['simd'])}. {machine['rustc']}; {machine['openssl']}. Commit {machine['commit']}"
    f"{' + local changes' if machine['dirty'] else ''}. Load average {' '.join(machine['load_at_start'])} at the start, "
    f"{' '.join(machine.get('load_at_end', ['?']))} at the end; the whole run took {machine.get('wall_s', 0) / 60:.0f} min"
    f"{' (`--quick`: fewer rounds, noisier figures)' if machine['quick'] else ''}.")
fault = machine.get("fresh_memory_gbs")
if fault:
    out("")
    out(f"**Fresh memory on this machine:** {fault:.2f} GB/s (first touch of 1 GiB of new anonymous memory, median of "
        "3, measured at the start). Unsealing or loading a model writes every byte into fresh pages, so this rate bounds "
        "sections 2 and 3 as much as SHA-256 and AES do (`perf` of a one-thread 1 GiB unseal on this machine at 1.7 "
        "GB/s: the kernel's page zeroing, `clear_page_erms`, 49% of the time; SHA-256 28%; AES-GCM 6%).")
out("")
out("Produced by `benches/run` (raw figures in `benches/results/`). Each figure is the median over repeated runs "
    "with (min–max); ratios are medians of per-round ratios where the engines ran interleaved. On this 2-core VM "
    "the clock and the host's load move figures by up to ~1.5× between minutes, which is why peers run in the same "
    "rounds and ratios, not absolute figures, carry the conclusions.")
out("")

# ---------------------------------------------------------------- inference
runs = jl("runs.jsonl")
if runs:
    by = {e: [r for r in runs if r["engine"] == e] for e in ["veil-runtime", "candle-plain", "candle", "llama.cpp"]}
    rt, vp, cd, ll = by["veil-runtime"], by["candle-plain"], by["candle"], by["llama.cpp"]
    names = ["Veil runtime\n(sealed, API)", "Veil engine\n(no runtime)", "plain candle", "llama.cpp"]
    groups = [rt, vp, cd, ll]

    def ratio(a, b, k):
        return stat(x[k] / y[k] for x, y in zip(a, b))

    out(f"## 1. Inference: SmolLM2-135M-Instruct Q4_1, same GGUF, same prompt ids, {vp[0]['threads']} "
        f"threads, greedy, {rt[0]['total_tokens']} tokens")
    out("")
    out("| engine | prompt tok/s | generation tok/s | time to first token, ms | prompt vs llama.cpp | generation vs llama.cpp |")
    out("|---|---|---|---|---|---|")
    for n, g in zip(names, groups):
        out(f"| {n.replace(chr(10), ' ')} | {fmt(stat(r['prompt_tps'] for r in g))} | {fmt(stat(r['gen_tps'] for r in g))} | "
            f"{fmt(stat(1e3 * r['prompt_s'] for r in g))} | {ratio(g, ll, 'prompt_tps')[0]:.2f}× | {ratio(g, ll, 'gen_tps')[0]:.2f}× |")
    out("")
    out(f"{len(rt)} interleaved rounds. The runtime is `veil serve` on the simulated SEV-SNP TEE serving the sealed "
        "bundle through its OpenAI API over attested TLS (streaming, receipts, audit log on), timed by the client: "
        "time to first token = request sent → first content chunk. The other three run in-process after a warm-up "
        "(prompt = the prompt's forward pass and the first token). llama.cpp is llama-cpp-python "
        f"{ll[0]['llama_cpp_python']} built with `-march=native`. Details and per-round figures: "
        "`benches/results/inference.md`.")
    out("")
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.6))
    for i, (key, title, scale) in enumerate([("prompt_tps", "prompt tokens/s", 1), ("gen_tps", "generation tokens/s", 1),
                                             ("prompt_s", "time to first token (ms)", 1e3)]):
        st = [stat(scale * r[key] for r in g) for g in groups]
        m, e = errbars(st)
        ax[i].bar(range(4), m, yerr=e, capsize=4, color=["#3b6", "#6a8", "#999", "#c64"])
        ax[i].set_xticks(range(4), names, fontsize=7)
        ax[i].set_title(title)
    out(chart("inference.png"))
    out("")
    g_r, p_r = ratio(rt, ll, "gen_tps"), ratio(rt, ll, "prompt_tps")
    bars.append(("Generation ≥ 1.0× llama.cpp (runtime, through the API)", f"{g_r[0]:.2f}× ({g_r[1]:.2f}–{g_r[2]:.2f})",
                 g_r[0] >= 1.0, "Veil's own kernels (issue 7); llama.cpp in the same rounds."))
    bars.append(("Prompt ≥ 0.8× llama.cpp (runtime, through the API)", f"{p_r[0]:.2f}× ({p_r[1]:.2f}–{p_r[2]:.2f})",
                 p_r[0] >= 0.8, "The runtime's prompt time includes HTTP, TLS, the template and the first token."))
    rg, rp = ratio(rt, vp, "gen_tps"), ratio(rt, vp, "prompt_tps")
    ok = rg[0] >= 0.98 and rp[0] >= 0.98
    bars.append(("Sealed runtime within 2% of plain inference (same engine, no runtime)",
                 f"generation {rg[0]:.3f}×, prompt {rp[0]:.3f}×", ok,
                 "" if ok else "Per-round ratios spread over "
                 f"{rg[1]:.2f}–{rg[2]:.2f} (generation) and {rp[1]:.2f}–{rp[2]:.2f} (prompt) on this VM: single rounds are "
                 "noise at this size; the prompt figure also carries the request's HTTP, TLS and template work (~1–2 ms "
                 "of a ~60 ms prompt). More rounds narrow it; a quieter machine closes it."))

# ---------------------------------------------------------------- cold start
cold = jl("cold.jsonl")
synth = jl("cold-synth.jsonl")
if cold:
    out("## 2. Cold start: sealed (verify signature + attest + unseal + load) vs the plaintext model loaded by candle")
    out("")
    out("| model | sealed total ms | open + signature | attest + key | unseal + verify | load | plaintext (candle) ms | sealed / plaintext |")
    out("|---|---|---|---|---|---|---|---|")
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    synth_label = f"synthetic {synth[0]['bytes'] / 2**30:.1f} GiB (Q8_0)" if synth else "synthetic"
    for i, (label, rows) in enumerate([(f"SmolLM2 Q4_1 ({cold[0]['bytes'] / 1e6:.0f} MB)", cold), (synth_label, synth)]):
        se = [c for c in rows if c["kind"] == "sealed"]
        pl = [c for c in rows if c["kind"] == "plain"]
        if not se or not pl:
            continue
        r = stat(s["total_ms"] / p["total_ms"] for s, p in zip(se, pl))
        ph = {k: stat(c[k] for c in se) for k in ["open_ms", "attest_ms", "unseal_ms", "load_ms", "total_ms"]}
        out(f"| {label} | {fmt(ph['total_ms'], 0)} | {ph['open_ms'][0]:.1f} | {ph['attest_ms'][0]:.1f} | "
            f"{ph['unseal_ms'][0]:.0f} | {ph['load_ms'][0]:.0f} | {fmt(stat(p['total_ms'] for p in pl), 0)} | "
            f"{r[0]:.2f}× ({r[1]:.2f}–{r[2]:.2f}) |")
        bottom = 0
        for k, c in [("open_ms", "#777"), ("attest_ms", "#c64"), ("unseal_ms", "#36b"), ("load_ms", "#3b6")]:
            ax[i].bar(0, ph[k][0], bottom=bottom, color=c, label=k.replace("_ms", ""))
            bottom += ph[k][0]
        pr = stat(p["read_ms"] for p in pl)[0]
        pw = stat(p["weights_ms"] for p in pl)[0]
        ax[i].bar(1, pr, color="#36b", hatch="//", label="read (plaintext)")
        ax[i].bar(1, pw, bottom=pr, color="#3b6", hatch="//", label="parse + weights (plaintext)")
        ax[i].set_xticks([0, 1], ["sealed (veil serve)", "plaintext (candle)"])
        ax[i].set_ylabel("ms")
        ax[i].set_title(label)
        ax[i].legend(fontsize=7)
        note = ""
        if r[0] > 1.25:
            plain_total = stat(p["total_ms"] for p in pl)[0]
            extra = ph["total_ms"][0] - plain_total
            note = (f"Sealed takes {extra:.0f} ms more (medians): attest {ph['attest_ms'][0]:.0f} ms, unseal "
                    f"{ph['unseal_ms'][0] - pr:+.0f} ms against the plaintext read (decrypting and hashing on top of "
                    f"reading), load {ph['load_ms'][0] - pw:+.0f} ms against candle's (the runtime also builds the "
                    "tokenizer and re-lays 32-block matrices into 8-row groups, in place). Unsealing into a buffer "
                    "that the loader then copies from is a second pass over fresh memory the plaintext path does not "
                    "have; decrypting straight into the weights' final buffers (a streaming unseal feeding the "
                    "loader) would close most of it.")
        bars.append((f"Cold start ≤ 1.25× plaintext load — {label}", f"{r[0]:.2f}× ({r[1]:.2f}–{r[2]:.2f})", r[0] <= 1.25, note))
    out("")
    out("Page cache of the bundle or GGUF evicted before every run (checked with `fincore`); runtime phases from "
        "`veil serve`'s own boot log; plaintext = read + `quantized_llama::ModelWeights::from_gguf` (candle-plain "
        "load). The sealed boot includes a real broker round trip on loopback.")
    out("")
    out(chart("cold_start.png"))
    out("")

# ---------------------------------------------------------------- seal
seal = jl("seal.jsonl")
if seal:
    out("## 3. Sealing and unsealing vs `openssl speed` (SHA-256, AES-256-GCM, one core, 16 KiB blocks)")
    out("")
    out("| input | threads | seal GB/s | unseal GB/s | openssl SHA-256 GB/s | openssl AES-256-GCM GB/s | limit GB/s | seal / limit | unseal / limit |")
    out("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(s["input"], s["threads"]) for s in seal}, key=lambda k: (k[0] != "smollm2", k[1]))
    labels, sst, ust, lst = [], [], [], []
    for inp, th in keys:
        rs = [s for s in seal if s["input"] == inp and s["threads"] == th]
        sr = stat(s["seal_gbs"] / s["limit_gbs"] for s in rs)
        ur = stat(s["unseal_gbs"] / s["limit_gbs"] for s in rs)
        a, b, c = stat(s["seal_gbs"] for s in rs), stat(s["unseal_gbs"] for s in rs), stat(s["limit_gbs"] for s in rs)
        name = "SmolLM2 GGUF" if inp == "smollm2" else "synthetic 2 GiB"
        out(f"| {name} | {th} | {fmt(a, 3)} | {fmt(b, 3)} | {fmt(stat(s['sha256_gbs'] for s in rs), 3)} | "
            f"{fmt(stat(s['aes256gcm_gbs'] for s in rs), 3)} | {c[0]:.3f} | {100 * sr[0]:.0f}% | {100 * ur[0]:.0f}% |")
        labels.append(f"{name}\n{th} thread{'s' if th > 1 else ''}")
        sst.append(a), ust.append(b), lst.append(c)
        ok = sr[0] >= 0.7 and ur[0] >= 0.7
        bars.append((f"Seal and unseal ≥ 70% of the SHA-256/AES-GCM limit — {name}, {th} thread{'s' if th > 1 else ''}",
                     f"seal {100 * sr[0]:.0f}%, unseal {100 * ur[0]:.0f}%", ok,
                     "" if ok else "The limit counts only hashing and encryption; each whole process also writes the "
                     "bundle or the plaintext into fresh memory"
                     + (f" ({fault:.2f} GB/s here, see the top: {2 ** 30 / 1e9 / fault:.2f} s per GiB before any "
                        "hashing)" if fault else "")
                     + ", and pays start, key parsing, the signature, fsync and the wipe. What would close it: "
                     "reuse chunk buffers on the `--check` path and write the output through huge pages, so that "
                     "fewer fresh pages are faulted in. The same seal and unseal code measured 74–88% of the limit "
                     "in an earlier session on this VM (docs/benchmarks.md)."))
    out("")
    out("The limit is what the machine's own primitives allow for the bundle's work: one SHA-256 stream per file "
        "(the OMS `files` hashing) and AES-256-GCM, so 1/(1/sha + 1/aes) on one thread and min(sha, 2 × aes) on two; "
        "openssl is measured right before every run and each run is compared with its own limit. Whole `veil seal` "
        "and `veil unseal --check` processes, files on tmpfs.")
    out("")
    x = range(len(labels))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for off, st, lab, col in [(-0.27, sst, "seal", "#36b"), (0, ust, "unseal", "#3b6"), (0.27, lst, "limit (openssl)", "#999")]:
        m, e = errbars(st)
        ax.bar([i + off for i in x], m, width=0.27, yerr=e, capsize=3, label=lab, color=col)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("GB/s")
    ax.legend(fontsize=8)
    out(chart("seal.png"))
    out("")

# ---------------------------------------------------------------- verification
ver = {v["id"]: v for v in jl("verify.jsonl")}
if ver:
    out("## 4. Evidence verification on one core (criterion, real hardware vectors)")
    out("")
    out("| evidence | verifications/s | µs per verification | peer (same input, same run) | ratio |")
    out("|---|---|---|---|---|")
    rows = [
        ("SEV-SNP report, VCEK chain cached (trustee Milan v2)", "snp_verify_cached_chain", None),
        ("SEV-SNP report, cold (ARK→ASK→VCEK, then the report)", "snp_verify_cold", None),
        ("TDX quote v4, collateral cached (dcap-qvl's sample)", "tdx_verify/veil_cached_collateral", "tdx_verify/dcap_qvl"),
        ("TDX quote v4, cold (collateral, CRLs, PCK chain, quote)", "tdx_verify/veil_cold", "tdx_verify/dcap_qvl"),
        ("TPM quote (GCE, RSA-2048 AK, 24 PCRs, nonce)", "tpm_quote_verify", None),
        ("composite: Azure SNP CVM HCL report + vTPM quote", "composite_az_snp_vtpm_cached_chain", None),
    ]
    chart_rows = []
    for label, i, peer in rows:
        if i not in ver:
            continue
        v = ver[i]
        us = (v["median_ns"] / 1e3, v["min_ns"] / 1e3, v["max_ns"] / 1e3)
        per_s = 1e6 / us[0]
        peer_txt, ratio_txt = "", ""
        if peer and peer in ver:
            p = ver[peer]["median_ns"]
            peer_txt = f"dcap-qvl `verify::verify`: {p / 1e3:.0f} µs ({1e9 / p:.0f}/s)"
            ratio_txt = f"{v['median_ns'] / p:.2f}× dcap-qvl's time"
        out(f"| {label} | {per_s:.0f} | {fmt(us, 0)} | {peer_txt} | {ratio_txt} |")
        chart_rows.append((label.split(",")[0].split(" (")[0] + (" cached" if "cached" in i else " cold" if "cold" in i else ""), per_s))
    if "tdx_verify/dcap_qvl" in ver:
        chart_rows.append(("dcap-qvl TDX (peer)", 1e9 / ver["tdx_verify/dcap_qvl"]["median_ns"]))
    out("")
    out("Min–max are over criterion's samples. The floor of the SNP check, one P-384 signature: aws-lc-rs "
        f"{ver['snp_p384_signature_only_aws_lc']['median_ns'] / 1e3:.0f} µs, ring "
        f"{ver['snp_p384_signature_only_ring']['median_ns'] / 1e3:.0f} µs. dcap-qvl re-verifies the collateral and "
        "the PCK chain on every call; Veil's cached figure verifies them once and the quote per call, its cold figure "
        "does all of it per call.")
    out("")
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.barh(range(len(chart_rows)), [r[1] for r in chart_rows], color=["#999" if "peer" in r[0] else "#36b" for r in chart_rows])
    ax.set_yticks(range(len(chart_rows)), [r[0] for r in chart_rows], fontsize=8)
    ax.set_xlabel("verifications per second, one core")
    ax.invert_yaxis()
    out(chart("verify.png"))
    out("")
    s = ver["snp_verify_cached_chain"]["median_ns"] / 1e6
    bars.append(("SNP report verification, cached chain ≤ 1 ms (one core)", f"{s:.3f} ms", s <= 1.0, ""))
    t = ver["tdx_verify/veil_cached_collateral"]["median_ns"]
    q = ver["tdx_verify/dcap_qvl"]["median_ns"]
    bars.append(("TDX quote, collateral cached ≤ 0.5 ms and ≤ 0.5× dcap-qvl", f"{t / 1e6:.3f} ms, {t / q:.2f}× dcap-qvl",
                 t / 1e6 <= 0.5 and t / q <= 0.5, ""))

# ---------------------------------------------------------------- broker
kbs = jl("kbs-load.jsonl")
if kbs:
    out("## 5. Key broker: attest + release round trips on loopback vs concurrency (simulated evidence)")
    out("")
    out("| TEE | concurrent clients | round trips/s | p50 ms | p99 ms | broker CPU ms / round trip | errors |")
    out("|---|---|---|---|---|---|---|")
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    best = {}
    for tee, col in [("snp", "#36b"), ("tdx", "#c64")]:
        levels = sorted({int(k["concurrency"]) for k in kbs if k["tee"] == tee})
        rps, p50, p99 = [], [], []
        for c in levels:
            rs = [k for k in kbs if k["tee"] == tee and int(k["concurrency"]) == c]
            a = stat(k["rps"] for k in rs)
            b, d = stat(k["p50_ms"] for k in rs), stat(k["p99_ms"] for k in rs)
            cpu = [float(k["broker_cpu_ms_per_rt"]) for k in rs if isinstance(k["broker_cpu_ms_per_rt"], (int, float))]
            cpu_txt = f"{med(cpu):.2f}" if cpu else "n/a"
            out(f"| {tee} | {c} | {fmt(a, 0)} | {fmt(b, 2)} | {fmt(d, 2)} | {cpu_txt} | {int(sum(k['errors'] for k in rs))} |")
            rps.append(a), p50.append(b), p99.append(d)
            best[tee] = max(best.get(tee, (0, 0)), (a[0], c))
        m, e = errbars(rps)
        ax[0].errorbar(levels, m, yerr=e, marker="o", capsize=3, label=tee, color=col)
        ax[1].plot(levels, [x[0] for x in p50], marker="o", label=f"{tee} p50", color=col)
        ax[1].plot(levels, [x[0] for x in p99], marker="x", linestyle="--", label=f"{tee} p99", color=col)
    for a_ in ax:
        a_.set_xscale("log", base=2)
        a_.set_xlabel("concurrent clients")
        a_.legend(fontsize=8)
    ax[0].set_ylabel("round trips/s")
    ax[0].axhline(500, color="#999", linestyle=":", linewidth=1)
    ax[1].set_ylabel("latency ms")
    out("")
    out("Each round trip is `/auth`, `/attest` (evidence verified, Rego appraisal, an EAR token signed, a durable audit "
        "record) and `/resource` (Rego, a JWE to the request's key, a durable audit record), TLS 1.3 keep-alive. The "
        "load generator runs on the same 2 cores (its evidence signing timed apart and excluded from the latencies); "
        "a fresh broker per level. Peer anchor: Trustee publishes 17–73 ms per attestation-service evaluation.")
    out("")
    out(chart("broker.png"))
    out("")
    for tee in ["snp", "tdx"]:
        if tee in best:
            r, c = best[tee]
            cpus = [float(k["broker_cpu_ms_per_rt"]) for k in kbs if k["tee"] == tee and int(k["concurrency"]) == c
                    and isinstance(k["broker_cpu_ms_per_rt"], (int, float))]
            cpu = med(cpus) if cpus else 0.0
            cores = machine["cores"]
            capacity = (f"The broker's own CPU, {cpu:.2f} ms per round trip at that level, is {1000 * cores / cpu:.0f} "
                        f"round trips/s on these {cores} cores with the generator elsewhere; ") if cpu > 0 else ""
            bars.append((f"Key broker ≥ 500 round trips/s — {tee.upper()} (simulated)", f"{r:.0f}/s at {c} clients", r >= 500,
                         "" if r >= 500 else f"The load generator (simulated evidence signing, TLS, JSON) shares the "
                         f"{cores} cores with the broker. {capacity}a generator on another machine (or fewer "
                         "broker-side allocations, docs/benchmarks.md) would show it."))

# ---------------------------------------------------------------- TLS
tls = jl("tls.jsonl")
if tls:
    out("## 6. Attested TLS handshake vs plain TLS (rustls, loopback, one at a time)")
    out("")
    out("| mode | what | handshake ms | p99 ms | handshakes/s | vs pinned (same server) |")
    out("|---|---|---|---|---|---|")
    pinned = next(t for t in tls if t["mode"] == "pinned")
    for t in tls:
        out(f"| {t['mode']} | {t['what']} | {t['median_ms']:.3f} ({t['min_ms']:.3f}–{t['max_ms']:.3f}) | {t['p99_ms']:.3f} | "
            f"{t['per_s']:.0f} | {t['median_ms'] / pinned['median_ms']:.2f}× |")
    out("")
    out("Each handshake: TCP connect and a full TLS 1.3 handshake from a fresh connection (no resumption), "
        f"{tls[0]['n']} after 10 untimed. `attested` checks the runtime's RA-TLS certificate (its evidence, the key "
        "binding, the event log and the client policy) on every handshake; a client keeps the result for the "
        "certificate, so later connections cost what `attested-cached` shows. The ratio is against `pinned`, plain TLS "
        "to the same server: the cost of attestation itself; `plain` (another server stack, a two-certificate chain "
        "under WebPKI) is context for what TLS costs anywhere.")
    out("")
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.barh(range(len(tls)), [t["median_ms"] for t in tls],
            xerr=[[t["median_ms"] - t["min_ms"] for t in tls], [t["p99_ms"] - t["median_ms"] for t in tls]],
            capsize=3, color="#36b")
    ax.set_yticks(range(len(tls)), [t["mode"] for t in tls])
    ax.set_xlabel("handshake ms (median; bar from min to p99)")
    ax.invert_yaxis()
    out(chart("tls.png"))
    out("")

# ---------------------------------------------------------------- overhead
ovh_path = os.path.join(RES, "overhead.json")
if os.path.exists(ovh_path) and runs:
    ovh = json.load(open(ovh_path))
    answer_s = med(r["request_s"] for r in rt)
    timer = ovh["timer_checkpoint_median_us"] * min(1.0, answer_s / ovh["timer_checkpoint_secs"])
    per_req = ovh["mean_us"] + timer
    share = per_req / 1e6 / answer_s
    out("## 7. Per-request security overhead vs plain serving")
    out("")
    out("| item | value |")
    out("|---|---|")
    out(f"| auth (key digest, rate limit) + validation + request/answer hashes + audit record + ES256 receipt, median | {ovh['median_us']:.1f} µs |")
    out(f"| the same, mean over {ovh['iters']} requests (a checkpoint with `fdatasync` every {ovh['audit_checkpoint_every']} records) | {ovh['mean_us']:.1f} µs |")
    out(f"| the 10-second timer checkpoint, charged pro rata | {timer:.1f} µs |")
    out(f"| one 64-token answer through the runtime (request → last byte) | {1e3 * answer_s:.0f} ms |")
    out(f"| **share of the answer** | **{100 * share:.4f}%** |")
    out("")
    out("Timed in-process with the runtime's own receipt signer, audit log (on disk) and limiter. End to end, the "
        "whole runtime (HTTP, TLS, template, streaming, all of the above) against the same engine without it is the "
        "\"within 2%\" row of section 1.")
    out("")
    bars.append(("Per-request security overhead ≤ 1% of a 64-token answer", f"{100 * share:.4f}%", share <= 0.01, ""))

# ---------------------------------------------------------------- kernels
kpath = os.path.join(RES, "cpu-kernels.md")
if os.path.exists(kpath):
    out("## 8. CPU kernels per weight format vs llama.cpp (benches/cpu-kernels)")
    out("")
    text = open(kpath).read().split("\n", 2)[2]
    out(text.replace("\n## ", "\n### ").strip())
    out("")

# ---------------------------------------------------------------- bars
out("## DESIGN.md section 9: every bar")
out("")
out("| bar | measured | result | why not, and what would close it |")
out("|---|---|---|---|")
for b, fig, ok, note in bars:
    out(f"| {b} | {fig} | **{'met' if ok else 'not met'}** | {'' if ok else note} |")
out("")
open(OUT, "w").write("\n".join(lines) + "\n")
print(f"{OUT}: {sum(ok for _, _, ok, _ in bars)}/{len(bars)} bars met", file=sys.stderr)
