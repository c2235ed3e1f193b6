"""What the commands print, and the run's reports: every table, report.json and report.md."""

from __future__ import annotations

import json
from pathlib import Path

from .metrics import CONFUSION_MAX
from .rundir import atomic_write


def table(header: list, rows: list, right=()) -> list:
    """A Markdown table as lines: ``header``, the separator (columns whose index is in ``right``
    aligned right), then ``rows``; every cell is str()-ed. The package's reports and the
    benchmarks' pages all draw their tables with it."""
    sep = ["---:" if i in right else "---" for i in range(len(header))]
    return ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join(sep) + "|"] + \
           ["| " + " | ".join(map(str, row)) + " |" for row in rows]


def duration(seconds: float) -> str:
    """12.3 s, 4m05s, 1h02m."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def train_summary(r: dict) -> str:
    """The line `nlclf train` prints: where, the best epoch(s), dev and test accuracy, seconds; and a
    second when the run was still improving at its last epoch."""
    if r.get("members"):
        best = (f"ensemble of {len(r['members'])}, best epochs "
                + ", ".join(f"{m['best_epoch']}/{m['epochs']}" for m in r["members"]))
    else:
        best = f"best epoch {r['best_epoch']}/{len(r['history'])}"
    parts = [f"{r['out_dir']}: {best}"]
    for split in ("dev", "test"):
        m = r["final"].get(split)
        if m is None:
            continue
        parts.append(f"{split} micro-F1 {m['micro_f1']:.4f}, P@1 {m['p_at_1']:.4f}" if m.get("multi_label")
                     else f"{split} accuracy {m['accuracy']:.4f}")
    parts.append(f"{r['total_seconds']:.1f} s")
    line = ", ".join(parts)
    if r.get("still_improving"):
        line += (f"\n(the best epoch was the last of train.epochs = {r['epochs_cap']}: it was still improving; "
                 f"raise train.epochs, e.g. --set train.epochs={2 * r['epochs_cap']})")
    return line + "\n"


def event_line(event: str, info: dict) -> str | None:
    """One plain line for a progress event of the pipeline, or None for events that have none
    (batches, counts while reading)."""
    if event == "epoch_end":
        member = f"member {info['member']}  " if info.get("member") else ""
        passes = f" ({info['passes']:g} passes)" if info.get("passes") else ""
        score = (f"dev micro-F1 {info['dev_micro_f1']:.4f}" if "dev_micro_f1" in info
                 else f"dev accuracy {info['dev_accuracy']:.4f}")
        return (f"{member}epoch {info['epoch']}/{info['epochs']}{passes}  train loss {info['train_loss']:.4f}  dev loss "
                f"{info['dev_loss']:.4f}  {score}  macro-F1 "
                f"{info['dev_macro_f1']:.4f}  {info['seconds']:.1f} s" + ("  *best*" if info.get("best") else ""))
    if event == "member_start":
        return f"ensemble member {info['member']} of {info['members']}"
    if event == "stopped":
        by = f" by more than {info['min_delta']:g} (train.min_delta)" if info.get("min_delta") else ""
        return (f"stopped after epoch {info['epoch']} of {info['epochs']}: no better dev {info['metric']}{by} for "
                f"{info['patience']} epochs (train.patience); the best is epoch {info['best_epoch']} "
                f"({info['best_score']:.4f})")
    if event == "stage_end" and info["stage"] == "read":
        return (f"read {info['lines']:,} examples of {info['file']} in {info['seconds']:.1f} s; vocabulary of "
                f"{info['features']:,} features")
    if event == "stage_end" and info["stage"] == "featurize":
        return (f"featurized {info['rows']:,} training and {info['dev_rows']:,} dev texts into {info['columns']:,} "
                f"features ({info['nnz']:,} non-zeros) in {info['seconds']:.1f} s")
    return None


def metrics_table(m: dict) -> str:
    """The per-class table and confusion matrix of a metrics.report dict, as Markdown."""
    labels = m["labels"]
    f3 = lambda d: [f"{d['precision']:.3f}", f"{d['recall']:.3f}", f"{d['f1']:.3f}"]
    rows = [[lab, *f3(m["per_class"][lab]), m["per_class"][lab]["support"]] for lab in labels]
    rows += [[f"*{avg} avg*", *f3(m[f"{avg}_avg"]), m["n"]] for avg in ("micro", "macro", "weighted")]
    lines = table(["class", "precision", "recall", "F1", "support"], rows, right={1, 2, 3, 4})
    if m.get("confusion_matrix") is None:
        lines += ["", f"Most frequent confusions (the full confusion matrix is kept up to "
                      f"{CONFUSION_MAX} classes; this set has {len(labels)}):", ""]
        lines += table(["true", "predicted", "count"],
                       [[c["true"], c["predicted"], c["count"]] for c in m.get("top_confusions", [])], right={2})
        return "\n".join(lines)
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
    lines += table(["true \\ predicted", *labels], [[lab, *row] for lab, row in zip(labels, m["confusion_matrix"])],
                   right=set(range(1, len(labels) + 1)))
    return "\n".join(lines)


def several_table(m: dict) -> str:
    """The figures of a multi-label metrics dict (pipeline.several_report) as Markdown: the
    micro/macro/samples precision, recall and F1, P@1, P@5, R@5, Hamming loss and subset
    accuracy, then the per-label table."""
    f3 = lambda *v: [f"{x:.3f}" for x in v]
    rows = [[f"*{avg}*", *f3(m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"])]
            for avg in ("micro", "macro", "samples")]
    lines = table(["average", "precision", "recall", "F1"], rows, right={1, 2, 3})
    th = m.get("thresholds")
    th_text = "" if th is None else (f"threshold {th:g}" if not isinstance(th, list) else
                                     f"per-label thresholds {min(th):g} to {max(th):g}")
    lines += ["", f"P@1 {m['p_at_1']:.4f}  P@5 {m['p_at_5']:.4f}  R@5 {m['r_at_5']:.4f}  Hamming loss "
                  f"{m['hamming_loss']:.4f}  subset accuracy {m['subset_accuracy']:.4f}  (n = {m['n']}"
                  + (f", {th_text})" if th_text else ")"), ""]
    per = sorted(m["per_label"], key=lambda d: (-d["support"], d["label"]))
    lines += table(["label", "precision", "recall", "F1", "support"],
                   [[d["label"], *f3(d["precision"], d["recall"], d["f1"]), d["support"]] for d in per],
                   right={1, 2, 3, 4})
    return "\n".join(lines)


def _best_epoch_lines(r: dict) -> list:
    if not r.get("members"):
        return [f"- best epoch: {r['best_epoch']} of {len(r['history'])} (dev {r['metric']} {r['best_score']:.4f})"]
    ms = r["members"]
    return [f"- ensemble of {len(ms)} networks (logits averaged): dev {r['metric']} {r['best_score']:.4f}; "
            f"each member alone: " + ", ".join(f"{m['best_score']:.4f}" for m in ms),
            "- best epochs of the members: " + ", ".join(f"{m['best_epoch']} of {m['epochs']}" for m in ms)]


def train_markdown(r: dict) -> str:
    out = [f"# nlclf training report", "",
           f"- training examples: {r['data']['train']}, dev: {r['data']['dev']}, test: {r['data']['test']}",
           f"- classes: {len(r['labels'])} ({', '.join(r['labels'])})",
           f"- features: {r['features']['kind']}, vocabulary {r['features']['vocab_size']}, "
           f"input width {r['features']['n_features']}",
           f"- network: hidden {r['model']['hidden']}, {r['model']['activation']}, "
           f"{r['model']['parameters']:,} parameters",
           *_best_epoch_lines(r),
           f"- training loop: {r['train_seconds']:.2f} s; whole run {r['total_seconds']:.2f} s", "",
           "## Epochs", ""]
    members = bool(r.get("members"))
    several = bool(r.get("multi_label"))
    first = "dev micro-F1" if several else "dev accuracy"
    out += ["| " + ("member | " if members else "") + f"epoch | train loss | dev loss | {first} | dev macro-F1 "
            "| lr | seconds |", "|" + "---:|" * (7 + members)]
    for h in r["history"]:
        score = h["dev_micro_f1"] if several else h["dev_accuracy"]
        out.append("| " + (f"{h['member']} | " if members else "") + f"{h['epoch']} | {h['train_loss']:.4f} "
                   f"| {h['dev_loss']:.4f} | {score:.4f} | {h['dev_macro_f1']:.4f} | {h['lr']:.3g} "
                   f"| {h['seconds']:.2f} |")
    cal = r.get("calibration")
    if cal:
        out += ["", f"Calibration: softmax temperature {cal['temperature']:.3f} fitted on dev; expected calibration "
                    f"error on dev {cal['dev_ece_before']:.4f} → {cal['dev_ece_after']:.4f}"
                + (f", on test {cal['test_ece_before']:.4f} → {cal['test_ece_after']:.4f}" if "test_ece_before" in cal else "")]
    comp = r.get("compress")
    if comp:
        out += ["", "Compressed (output.compress): " + (comp["reason"] if comp.get("kept_full_model") else
                f"{comp['original_bytes']:,} → {comp['size_bytes']:,} bytes, rows kept {comp['rows_kept']:,} of "
                f"{comp['rows_total']:,}" + (f", rank {comp['rank']}" if comp.get("rank") else "")
                + "".join(f"; {Path(c['file']).name}: the full model's label on {c['agreement']:.2%}"
                          + (f", accuracy {c['accuracy_original']:.4f} → {c['accuracy_compressed']:.4f}"
                             if "accuracy_original" in c else "")
                          for c in (comp.get("check"), comp.get("test")) if c)
                + ". The tables below are the full model's.")]
    for pic in r.get("pictures", []):
        out += ["", f"![{pic}]({pic})"]
    for split in ("dev", "test"):
        m = r["final"].get(split)
        if m and m.get("multi_label"):
            out += ["", f"## {split.capitalize()} set: micro-F1 {m['micro_f1']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
                        f"P@1 {m['p_at_1']:.4f}", "", several_table(m)]
        elif m:
            out += ["", f"## {split.capitalize()} set: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}",
                    "", metrics_table(m)]
    return "\n".join(out) + "\n"


def write_train_report(directory, r: dict) -> None:
    directory = Path(directory)
    atomic_write(directory / "report.json", (json.dumps(r, indent=2, ensure_ascii=False) + "\n").encode())
    atomic_write(directory / "report.md", train_markdown(r).encode())


def write_json(path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def write_text(path, text: str) -> None:
    atomic_write(path, text.encode())


# --- what the commands print ------------------------------------------------------------

def _one_line(text: str) -> str:
    """A text as one TSV field: tabs and line breaks become spaces."""
    return " ".join(text.split("\n")).replace("\t", " ").replace("\r", " ")


def _explanation(e: dict, fmt: str) -> list:
    """The fields of an explanation: label, probability, toward, against; for several labels a
    text, those four for each predicted label in turn."""
    fmt_list = lambda xs: ", ".join(f"{f} {v:+.3f}" for f, v in xs)
    return [x for one in e.get("labels", [e])
            for x in (one["label"], f"{one['proba']:.4f}", fmt_list(one["toward"]) or "-", fmt_list(one["against"]) or "-")]


def _explained(e: dict) -> dict:
    return {"label": e["label"], "proba": round(e["proba"], 6),
            "toward": [[f, round(v, 6)] for f, v in e["toward"]],
            "against": [[f, round(v, 6)] for f, v in e["against"]]}


def prediction_record(r: dict, many: bool, explain: bool) -> dict:
    """One result of predict.run_predict as the JSON object `predict --format jsonl` prints
    (and `nlclf serve` answers): label and probability (6 decimals), "top" with ``many``, the
    explanation's "toward" and "against" with ``explain`` (and "labels", one such object for
    each predicted label, for several labels a text)."""
    if explain:
        obj = _explained(r)
        if "labels" in r:
            obj["labels"] = [_explained(e) for e in r["labels"]]
        return obj
    top = r["top"]
    obj = {"label": top[0][0] if top else None, "proba": round(top[0][1], 6) if top else None}
    if many:
        obj["top"] = [{"label": l, "proba": round(p, 6)} for l, p in top]
    return obj


def prediction_lines(batch: list, fmt: str, proba: bool, many: bool, explain: bool) -> str:
    """The lines `nlclf predict` prints for a batch of predict.run_predict's results: one a
    record, in ``fmt`` (text: space-separated, tsv: tab-separated, jsonl: one object). The
    record's identifier (if any) comes first, its text (if kept) last."""
    out = []
    for r in batch:
        ident, text = r.get("id"), r.get("text")
        if fmt == "jsonl":
            obj = {} if ident is None else {"id": ident}
            obj.update(prediction_record(r, many, explain))
            if text is not None:
                obj["text"] = text
            out.append(json.dumps(obj, ensure_ascii=False))
            continue
        sep = "\t" if fmt == "tsv" else " "
        if explain:
            fields = _explanation(r, fmt)
        elif proba:
            fields = [x for l, p in r["top"] for x in (l, f"{p:.4f}")]
        else:
            fields = [l for l, _ in r["top"]]
        if ident is not None:
            fields.insert(0, _one_line(ident))
        if text is not None:
            fields.append(_one_line(text))
        out.append(sep.join(fields))
    return "\n".join(out) + "\n"


def eval_text(m: dict) -> str:
    """What `nlclf eval` prints: the headline, top-k figures, the per-class table, mistakes."""
    if m.get("multi_label"):
        k = m.get("top_k", 1)
        at_k = f"\nP@{k} {m['precision_at_k']:.4f}  R@{k} {m['recall_at_k']:.4f}" if k > 1 else ""
        return (f"micro-F1 {m['micro_f1']:.4f}  macro-F1 {m['macro_f1']:.4f}  samples-F1 {m['samples_f1']:.4f}  "
                f"P@1 {m['p_at_1']:.4f}  (n = {m['n']}){at_k}\n\n" + several_table(m) + "\n")
    lines = [f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  expected calibration error "
             f"{m['ece']:.4f}  (n = {m['n']})"]
    if m.get("top_k", 1) > 1:
        k = m["top_k"]
        lines.append(f"top-{k} accuracy {m['top_k_accuracy']:.4f}  P@{k} {m['precision_at_k']:.4f}  "
                     f"R@{k} {m['recall_at_k']:.4f}")
    lines += ["", metrics_table(m)]
    if "errors" in m:
        lines += [f"\nMost confident mistakes ({len(m['errors'])}):\n",
                  "| line | true | predicted | probability | text |\n|---:|---|---|---:|---|"]
        lines += [f"| {e['line']} | {e['label']} | {e['predicted']} | {e['proba']:.3f} | "
                  f"{e['text'].replace('|', '/')} |" for e in m["errors"]]
    return "\n".join(lines) + "\n"


def compare_text(r: dict) -> str:
    """What `nlclf compare` prints: both models' metrics, B − A, McNemar and the bootstrap."""
    a, b, mc, bs = r["a"], r["b"], r["mcnemar"], r["bootstrap"]
    several = r.get("multi_label", False)
    rows = ((("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("p_at_1", "P@1"), ("subset_accuracy", "exact match"))
            if several else (("accuracy", "accuracy"), ("macro_f1", "macro-F1")))
    lines = ["| metric | A | B | B − A |", "|---|---:|---:|---:|"]
    for key, name in rows:
        lines.append(f"| {name} | {a[key]:.4f} | {b[key]:.4f} | {r['b_minus_a'][key]:+.4f} |")
    pairs = (f"A with every label right and B not: {mc['b']}, B with every label right and A not: {mc['c']}"
             if several else f"A right and B wrong: {mc['b']}, A wrong and B right: {mc['c']}")
    lines += ["", f"A: {a['model']}", f"B: {b['model']}", f"n = {mc['n']} examples; {pairs}",
              f"McNemar{' (exact matches)' if several else ''}: exact p = {mc['p_exact']:.4g} "
              f"(chi-square {mc['chi2']:.3f}, p = {mc['p_chi2']:.4g})",
              f"paired bootstrap ({bs['resamples']} resamples): {'micro-F1' if several else 'accuracy'} difference B − A = "
              f"{bs['difference']:+.4f}, 95% interval [{bs['ci_low']:+.4f}, {bs['ci_high']:+.4f}], "
              f"P(B ≤ A) = {bs['p_value']:.4g}",
              f"at the 5% level: {'a real difference' if (min(bs['p_value'], 1 - bs['p_value']) < 0.025 if several else mc['p_exact'] < 0.05) else 'not distinguishable from noise'}"]
    return "\n".join(lines) + "\n"


def inspect_text(r: dict, data_path=None) -> str:
    """What `nlclf inspect` prints."""
    ens = (f" = an ensemble of {r['ensemble']} networks of hidden {r['member_hidden']}, side by side"
           if r["ensemble"] > 1 else "")
    lines = [f"{r['model']}: {r['kind']} features, hidden {r['hidden']}{ens} ({r['activation']}), "
             f"{len(r['labels'])} labels, {r['n_parameters']:,} parameters",
             "parameters: " + ", ".join(f"{k} {tuple(v)}" for k, v in r["parameters"].items()),
             f"vocabulary: {r['vocab_size']:,} entries, {r['n_features']:,} input features, "
             f"temperature {r['temperature']:.3g}",
             f"size: {r['size_bytes']:,} bytes (model.json and its arrays file)"]
    c = r.get("compressed")
    if c is not None:
        basis = f" in a rank-{c['rank']} basis" if c.get("rank") else ""
        agree = (f"; agreed with the original on {c['agreement']:.2%} of {c['check_file']}"
                 if "agreement" in c else "")
        lines.append(f"compressed: {c['layer']} {c['bits']}-bit{basis}, rows kept {c['rows_kept']:,} of "
                     f"{c['rows_total']:,} (dropped {c['rows_total'] - c['rows_kept']:,}), float16: "
                     f"{', '.join(c['float16']) or 'none'}{agree}")
    if "unknown_rate" in r:
        lines.append(f"unknown words in {data_path}: {r['unknown_rate']:.2%} of {r['tokens']:,} tokens; most "
                     f"frequent: " + ", ".join(f"{w} ({n})" for w, n in r["frequent_unknown"]))
    lines.append("\nfeatures most associated with each label (P(label | that feature alone)):")
    for label, feats in r["top_features"].items():
        lines.append(f"  {label}: " + ", ".join(f"{f} {p:.2f}" for f, p in feats))
    for w, nn in r.get("neighbours", {}).items():
        lines.append(f"\nnearest neighbours of '{w}': " + ("not in the vocabulary" if nn is None else
                                                          ", ".join(f"{t} {c:.3f}" for t, c in nn)))
    return "\n".join(lines) + "\n"


def compress_text(r: dict) -> str:
    """What `nlclf compress` prints: sizes, what was kept, the agreement."""
    mb = lambda n: f"{n / 1e6:.2f} MB"
    basis = f" in a rank-{r['rank']} basis" if r.get("rank") else ""
    lines = [f"{r['source']} -> {r['out']}: {mb(r['original_bytes'])} -> {mb(r['size_bytes'])} "
             f"(at most {mb(r['max_bytes'])}); {r['layer']} {r['bits']}-bit{basis}, rows kept "
             f"{r['rows_kept']:,} of {r['rows_total']:,}"]
    c = r.get("check")
    if c is not None:
        line = f"agreement with the original: {c['agreement']:.2%} of {c['n']:,} texts of {c['file']}"
        if "accuracy_original" in c:
            line += (f"; accuracy {c['accuracy_original']:.4f} -> {c['accuracy_compressed']:.4f} "
                     f"({100 * (c['accuracy_compressed'] - c['accuracy_original']):+.2f} points)")
        lines.append(line)
    else:
        lines.append("agreement not measured (--agreement 0 and no check file)")
    return "\n".join(lines) + "\n"


def cv_markdown(r: dict) -> str:
    progress = "" if r["finished"] == r["planned"] else f" ({r['finished']} of {r['planned']} runs finished)"
    metric = r.get("metric", "accuracy")                  # micro_f1 for several labels a text
    name = {"accuracy": "accuracy", "micro_f1": "micro-F1"}[metric]
    extra = [("p_at_1", "P@1")] if metric == "micro_f1" else []
    out = [f"# Cross-validation: {r['folds']} folds × {len(r['seeds'])} seed(s), {r['n']} examples{progress}", "",
           f"**{name} {r[metric]['mean']:.4f} ± {r[metric]['std']:.4f}**, "
           f"macro-F1 {r['macro_f1']['mean']:.4f} ± {r['macro_f1']['std']:.4f}"
           + "".join(f", {n} {r[k]['mean']:.4f} ± {r[k]['std']:.4f}" for k, n in extra) + " (mean ± std over runs)", ""]
    keys = [metric, "macro_f1"] + [k for k, _ in extra]
    rows = [[x["seed"], x["fold"], x["n_test"], f"failed: {x['error'].splitlines()[0][:80]}"] + [""] * (len(keys) + 1)
            if "error" in x else
            [x["seed"], x["fold"], x["n_test"], *(f"{x[k]:.4f}" for k in keys), x["best_epoch"], f"{x['seconds']:.1f}"]
            for x in r["runs"]]
    head = ["seed", "fold", "test examples", name, "macro-F1", *(n for _, n in extra), "best epoch", "seconds"]
    out += table(head, rows, right=set(range(len(head))))
    return "\n".join(out) + "\n"


def tune_markdown(r: dict) -> str:
    keys = sorted({k for t in r["trials"] for k in t["settings"]})
    out = [f"# Hyperparameter search: objective {r['objective']}", "",
           f"{len(r['trials'])} trials ({r.get('finished', len(r['trials']))} runs finished), epochs per rung "
           f"{r['rungs']}, {r['seconds']:.0f} s", ""]
    rows = []
    for rank, t in enumerate(r["trials"], start=1):
        vals = [(f"{t['settings'][k]:.4g}" if isinstance(t["settings"].get(k), float) else str(t["settings"].get(k, "")))
                for k in keys]
        if t["score"] is not None:
            sc = f"{t['score']:.4f}"
        elif "error" in t:
            sc = f"error: {(t['error'].splitlines() or [''])[0][:60]}"
        else:
            sc = "not run yet"
        rows.append([rank, t["trial"], *vals, t["seed"], t["epochs"] if t["epochs"] is not None else "", sc,
                     f"{t['seconds']:.1f}"])
    n = len(keys)
    out += table(["rank", "trial", *keys, "seed", "epochs", "score", "seconds"], rows,
                 right={0, 1, n + 2, n + 3, n + 4, n + 5})
    return "\n".join(out) + "\n"
