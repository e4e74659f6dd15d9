"""What students and TAs read: feedback.html per student, summary.html for the class.

Self-contained pages (pictures embedded as PNG data), readable offline. Hidden checks show their
description and their message only, never their source or expected values.
"""
from __future__ import annotations

import base64
import html
import io
import statistics
from collections import Counter

import numpy as np
import torch

from .course import Course
from . import training
from .gradebook import REFERENCE, Gradebook, course_fingerprint

TRAINERS = ("train_minibatch", "train_online")  # whose learned templates to show, in this order
STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #eee;text-align:left;
vertical-align:top}.pass{color:#1a7f37}.fail{color:#c62828}.note{color:#666;font-size:.9rem}
figure{display:inline-block;margin:.5rem}img{max-width:100%}"""


def png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def templates(book: Gradebook, student: str) -> tuple[str, torch.Tensor] | None:
    for trainer in TRAINERS:
        W = book.artifact(student, f"{trainer} templates")
        if W is not None and W.shape == (10, 784):
            return trainer, W
    return None


def reference_templates(course: Course, book: Gradebook) -> torch.Tensor:
    """The source solution's templates, trained once per course version: kept in the gradebook and
    in the data cache, so that a new output folder does not train them again."""
    version = course_fingerprint(course)[:16]
    W = book.artifact(REFERENCE, f"templates {version}")
    if W is None:
        cached = course.helpers().cache_dir() / "reference" / f"templates-{version}.npy"
        try:
            W = torch.from_numpy(np.load(cached, allow_pickle=False))
        except (OSError, ValueError):
            W = training.reference_templates(course)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached.with_suffix(".part.npy"), W.numpy())
            cached.with_suffix(".part.npy").replace(cached)
        book.keep(REFERENCE, f"templates {version}", W)
    return W


def summary(results) -> dict:
    totals = [r.total for r in results]
    failures = Counter(f"{c['unit']}: {c['label']}" for r in results for c in r.checks if not c["passed"])
    checks = Counter(f"{c['unit']}: {c['label']}" for r in results for c in r.checks)
    return {"students": len(results), "mean": statistics.mean(totals) if totals else 0.0,
            "median": statistics.median(totals) if totals else 0.0, "totals": totals,
            "failures": failures.most_common(), "pass_rate": {k: 1 - failures[k] / n for k, n in checks.items()},
            "not_ok": sum(r.status != "ok" for r in results)}


def summary_text(s: dict, max_total: float) -> str:
    lines = [f"{s['students']} students: mean {s['mean']:.1f}, median {s['median']:.1f} of {max_total:g}; "
             f"{s['not_ok']} with a lab that could not run"]
    bins = Counter(min(int(t // 10), 9) for t in s["totals"])
    for b in range(10):
        lines.append(f"  {b * 10:3d}-{b * 10 + 9 if b < 9 else 100:<3d} {'#' * bins[b]} {bins[b] or ''}")
    if s["failures"]:
        lines.append("checks failed most often:")
        lines += [f"  {n:4d}  {name}" for name, n in s["failures"][:10]]
    return "\n".join(lines)


def summary_page(s: dict, max_total: float) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(s["totals"], bins=range(0, int(max_total) + 11, 10), color="tab:blue", edgecolor="white")
    ax.set_xlabel("total")
    ax.set_ylabel("students")
    histogram = png(fig)
    rates = sorted(s["pass_rate"].items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rates) + 1))
    ax.barh([name[:70] for name, _ in rates], [rate for _, rate in rates], color="tab:green")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of students passing")
    ax.tick_params(axis="y", labelsize=7)
    passing = png(fig)
    table = "".join(f"<tr><td>{n}</td><td>{html.escape(name)}</td></tr>" for name, n in s["failures"][:20])
    body = (f"<p>{s['students']} students; mean {s['mean']:.1f}, median {s['median']:.1f} of {max_total:g}; "
            f"{s['not_ok']} with a lab that could not run.</p><h2>Scores</h2>{histogram}"
            f"<h2>Checks failed most often</h2><table><tr><th>students</th><th>check</th></tr>{table}</table>"
            f"<h2>Pass rate per check</h2>{passing}")
    return _page("Class summary", body)


class Pages:
    """Renders the pages of one grading output. What every student's page shares (the reference
    templates, the test image) is drawn once."""

    def __init__(self, course: Course, book: Gradebook):
        import matplotlib

        matplotlib.use("Agg")
        self.course, self.book = course, book
        self.utils = course.helpers()
        self.names = self.utils.CLASS_NAMES["fashion-mnist"]
        self._shared: dict | None = None

    def reference(self) -> torch.Tensor:
        return reference_templates(self.course, self.book)

    def shared(self) -> dict:
        if self._shared is None:
            images, labels = self.utils.load("fashion-mnist", "test")
            self._shared = {"image": images[0], "label": int(labels[0]),
                            "image_png": png(self.utils.image_figure(images[0])),
                            "reference_png": png(self.utils.templates_figure(self.reference(), self.names, "reference"))}
        return self._shared

    def pictures(self, student: str) -> str:
        mine = templates(self.book, student)
        if mine is None:
            return "<p class=note>No learned templates to show: the trainer's accuracy check did not return weights.</p>"
        trainer, W = mine
        shared = self.shared()
        p = torch.softmax(W @ shared["image"].reshape(-1), dim=0)
        return (f"<h2>Your learned templates</h2><p class=note>The rows of W after your <code>{trainer}</code> ran "
                "the lab's recipe: red pixels vote for the class, blue against.</p>"
                f"<figure>{png(self.utils.templates_figure(W, self.names, 'yours'))}</figure>"
                f"<figure>{shared['reference_png']}</figure>"
                f"<h2>Class probabilities for a test image</h2><p class=note>A {self.names[shared['label']]}, "
                f"as your templates see it.</p><figure>{shared['image_png']}</figure>"
                f"<figure>{png(self.utils.prob_figure(p, self.names))}</figure>")

    def student(self, result) -> str:
        rows = []
        for unit in self.course.units:
            rows.append(f"<h2>{html.escape(unit)}: {result.units[unit]:g} / {result.max_units[unit]:g}</h2><table>")
            for c in (c for c in result.checks if c["unit"] == unit):
                verdict = "<span class=pass>passed</span>" if c["passed"] else "<span class=fail>failed</span>"
                hidden = " <span class=note>(hidden check)</span>" if c["hidden"] else ""
                why = "" if c["passed"] else html.escape(c["message"])
                rows.append(f"<tr><td>{verdict}</td><td>{html.escape(c['label'])}{hidden}<br><span class=note>{why}"
                            f"</span></td><td>{c['points'] if c['passed'] else 0:g}/{c['points']:g}</td></tr>")
            rows.append("</table>")
        status = "" if not result.problems else \
            "<p class=fail>Not every check could run: " + html.escape(result.status) + "</p>"
        body = (f"<p>Total <b>{result.total:g} / {result.max_total:g}</b></p>{status}" + "".join(rows)
                + self.pictures(result.student))
        return _page(f"Feedback for {result.student}", body)

    def summary(self, results) -> str:
        return summary_page(summary(results), results[0].max_total)
