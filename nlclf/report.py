"""Run reports: report.json and report.md beside the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from .metrics import CONFUSION_MAX
from .rundir import atomic_write


def metrics_table(m: dict) -> str:
    """The per-class table and confusion matrix of a metrics.report dict, as Markdown."""
    labels = m["labels"]
    lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for lab in labels:
        c = m["per_class"][lab]
        lines.append(f"| {lab} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    for avg in ("micro", "macro", "weighted"):
        a = m[f"{avg}_avg"]
        lines.append(f"| *{avg} avg* | {a['precision']:.3f} | {a['recall']:.3f} | {a['f1']:.3f} | {m['n']} |")
    if m.get("confusion_matrix") is None:
        lines += ["", f"Most frequent confusions (the full confusion matrix is kept up to "
                      f"{CONFUSION_MAX} classes; this set has {len(labels)}):", "",
                  "| true | predicted | count |", "|---|---|---:|"]
        lines += [f"| {c['true']} | {c['predicted']} | {c['count']} |" for c in m.get("top_confusions", [])]
        return "\n".join(lines)
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
              "| true \\ predicted | " + " | ".join(labels) + " |",
              "|---|" + "---:|" * len(labels)]
    for lab, row in zip(labels, m["confusion_matrix"]):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
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
    out += ["| " + ("member | " if members else "") + "epoch | train loss | dev loss | dev accuracy | dev macro-F1 "
            "| lr | seconds |", "|" + "---:|" * (7 + members)]
    for h in r["history"]:
        out.append("| " + (f"{h['member']} | " if members else "") + f"{h['epoch']} | {h['train_loss']:.4f} "
                   f"| {h['dev_loss']:.4f} | {h['dev_accuracy']:.4f} | {h['dev_macro_f1']:.4f} | {h['lr']:.3g} "
                   f"| {h['seconds']:.2f} |")
    cal = r.get("calibration")
    if cal:
        out += ["", f"Calibration: softmax temperature {cal['temperature']:.3f} fitted on dev; expected calibration "
                    f"error on dev {cal['dev_ece_before']:.4f} → {cal['dev_ece_after']:.4f}"
                + (f", on test {cal['test_ece_before']:.4f} → {cal['test_ece_after']:.4f}" if "test_ece_before" in cal else "")]
    for pic in r.get("pictures", []):
        out += ["", f"![{pic}]({pic})"]
    for split in ("dev", "test"):
        m = r["final"].get(split)
        if m:
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
