"""What students and TAs read: feedback.html per student, summary.html for the class.

Self-contained pages (pictures embedded as PNG data), readable offline. Hidden checks show their
description and their message only, never their source or expected values. What the pictures
show is the course's: its checks keep tensors with a picture kind, and the course's
`<checks>/pictures.py` draws them beside the reference solution's (course artifacts).
"""
from __future__ import annotations

import base64
import html
import importlib.util
import io
import statistics
from collections import Counter
from types import ModuleType

from . import artifacts
from .course import Course
from .gradebook import Gradebook

STYLE = """body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #eee;text-align:left;
vertical-align:top}.pass{color:#1a7f37}.fail{color:#c62828}.note{color:#666;font-size:.9rem}
figure{display:inline-block;margin:.5rem;vertical-align:top}figcaption{font-size:.9rem;color:#444}
img{max-width:100%}td.num{text-align:right}"""


def png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _page(title: str, body: str, key: str = "") -> str:
    meta = f'<meta name="autograder-source" content="{key}">' if key else ""
    return (f"<!doctype html><html lang=en><meta charset=utf-8>{meta}<title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def course_pictures(course: Course) -> ModuleType | None:
    """The course's pictures.py beside its checks, if it has one."""
    path = course.checks / "pictures.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("autograder_course_pictures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summary(results) -> dict:
    totals = [r.total for r in results]
    failures = Counter(f"{c['unit']}: {c['label']}" for r in results for c in r.checks if not c["passed"])
    checks = Counter(f"{c['unit']}: {c['label']}" for r in results for c in r.checks)
    return {"students": len(results), "mean": statistics.mean(totals) if totals else 0.0,
            "median": statistics.median(totals) if totals else 0.0, "totals": totals,
            "failures": failures.most_common(), "pass_rate": {k: 1 - failures[k] / n for k, n in checks.items()},
            "not_ok": sum(r.status != "ok" for r in results), "reviews": [r for r in results if r.reviews]}


def summary_text(s: dict, max_total: float) -> str:
    """The summary the command line prints."""
    lines = [f"{s['students']} student(s): mean {s['mean']:.1f}, median {s['median']:.1f} of {max_total:g}"]
    bins = Counter(min(int(t // 10) * 10, int(max_total) // 10 * 10) for t in s["totals"])
    for start in range(0, int(max_total) + 1, 10):
        if bins[start]:
            lines.append(f"  {start:>3}-{min(start + 9, int(max_total)):<3} {'#' * bins[start]} {bins[start]}")
    if s["failures"]:
        lines.append("failed most often:")
        lines += [f"  {n:>3}  {name}" for name, n in s["failures"][:5]]
    if s["reviews"]:
        lines.append(f"for a TA to look at: {', '.join(r.student for r in s['reviews'])}")
    return "\n".join(lines)


class Pages:
    """Renders the pages of one grading output for its labs."""

    def __init__(self, course: Course, book: Gradebook, labs: list[str]):
        import matplotlib

        matplotlib.use("Agg")
        self.course, self.book, self.labs = course, book, labs
        self.pictures = course_pictures(course)
        self.shared: dict[str, str] = {}  # a picture every page shows, drawn once
        self.reference = artifacts.load(course)
        self.sandbox = book.settings().get("sandbox", "")

    def _figures(self, student: str) -> str:
        if self.pictures is None:
            return ""
        kept = self.book.artifacts(student)
        if not kept:
            return "<p class=note>No pictures: the checks that draw them did not get that far.</p>"
        reference = self.reference.kept if self.reference else {}
        parts = []
        for title, caption, draw, shared in self.pictures.pictures(kept, reference, self.course):
            if shared is None:
                image = png(draw())
            elif shared in self.shared:
                image = self.shared[shared]
            else:
                image = self.shared[shared] = png(draw())
            parts.append(f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>")
            if title:
                parts[-1] = f"<h2>{html.escape(title)}</h2>" + parts[-1]
        return "".join(parts)

    def student(self, result, key: str = "") -> str:
        rows = []
        units = [u for lab in self.course.labs if lab.name in self.labs for u in lab.units]
        for unit in units:
            rows.append(f"<h2>{html.escape(unit)}: {result.units[unit]:g} / {result.max_units[unit]:g}</h2><table>")
            for c in (c for c in result.checks if c["unit"] == unit):
                verdict = "<span class=pass>passed</span>" if c["passed"] else "<span class=fail>failed</span>"
                hidden = " <span class=note>(hidden check)</span>" if c["hidden"] else ""
                why = "" if c["passed"] else html.escape(c["message"])
                rows.append(f"<tr><td>{verdict}</td><td>{html.escape(c['label'])}{hidden}<br><span class=note>{why}"
                            f"</span></td><td class=num>{c['points'] if c['passed'] else 0:g}/{c['points']:g}</td></tr>")
            rows.append("</table>")
        status = "" if result.status == "ok" else f"<p class=fail>{html.escape(result.status)}</p>"
        body = (f"<p>Total <b>{result.total:g} / {result.max_total:g}</b> "
                f"<span class=note>({', '.join(self.labs)})</span></p>{status}" + "".join(rows)
                + self._figures(result.student))
        return _page(f"Feedback for {result.student}", body, key)

    def summary(self, results) -> str:
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        s, max_total = summary(results), results[0].max_total
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.hist(s["totals"], bins=range(0, int(max_total) + 11, 10), color="tab:blue", edgecolor="white")
        ax.set_xlabel(f"total (of {max_total:g})")
        ax.set_ylabel("students")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        histogram = png(fig)
        rates = sorted(s["pass_rate"].items(), key=lambda kv: kv[1])
        fig, ax = plt.subplots(figsize=(9, 0.3 * len(rates) + 1))
        ax.barh([name[:90] for name, _ in rates], [rate for _, rate in rates], color="tab:green")
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of students passing")
        ax.tick_params(axis="y", labelsize=8)
        passing = png(fig)
        labs = [lab for lab in self.course.labs if lab.name in self.labs]
        head = "".join(f"<th>{html.escape(lab.name)}</th>" for lab in labs)
        table = "".join(
            f"<tr><td><a href=\"{html.escape(r.student)}/feedback.html\">{html.escape(r.student)}</a></td>"
            + "".join(f"<td class=num>{sum(r.units[u] for u in lab.units):g}</td>" for lab in labs)
            + f"<td class=num>{r.total:g}</td><td>{html.escape(r.status)}</td></tr>" for r in results)
        failed = "".join(f"<tr><td class=num>{n}</td><td>{html.escape(name)}</td></tr>" for name, n in s["failures"][:20])
        body = (f"<p>{s['students']} students; mean {s['mean']:.1f}, median {s['median']:.1f} of {max_total:g}; "
                f"{s['not_ok']} whose status is not ok. Sandbox: {html.escape(self.sandbox)}.</p>"
                f"<h2>Students</h2><table><tr><th>student</th>{head}<th>total</th><th>status</th></tr>{table}</table>"
                f"<h2>Scores</h2>{histogram}"
                f"<h2>Checks failed most often</h2><table><tr><th>students</th><th>check</th></tr>{failed}</table>"
                f"<h2>Pass rate per check</h2>{passing}")
        return _page("Class summary", body)
