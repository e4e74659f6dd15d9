"""What students and TAs read: feedback.html per student, summary.html for the class.

Self-contained pages (pictures embedded as PNG data, a few lines of script), readable offline.
Hidden checks show their description and their message only, never their source or expected
values. What the pictures show is the course's: its checks keep arrays with a picture kind, and
the course's `<checks>/pictures.py` draws them beside the reference solution's (course artifacts).
"""
from __future__ import annotations

import base64
import html
import importlib.util
import io
import statistics
from collections import Counter
from types import ModuleType
from urllib.parse import quote

from . import artifacts
from .course import Course
from .final import Final
from .gradebook import Gradebook
from .reports import submitted_labs

STYLE = """body{font-family:system-ui,sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;table-layout:auto}td,th{padding:.3rem .5rem;border-bottom:1px solid #eee;
text-align:left;vertical-align:top;overflow-wrap:anywhere}.pass{color:#1a7f37}.fail{color:#c62828}
.note{color:#666;font-size:.9rem}figure{display:inline-block;margin:.5rem;vertical-align:top}
figcaption{font-size:.9rem;color:#444}img{max-width:100%}td.num,th.num{text-align:right;white-space:nowrap}
th.sort{cursor:pointer;user-select:none}th.sort:after{content:" \\2195";color:#aaa}
th[aria-sort=ascending]:after{content:" \\2191";color:#222}th[aria-sort=descending]:after{content:" \\2193";color:#222}
pre{background:#f6f8fa;padding:.5rem;overflow-x:auto;font-size:.85rem}pre .flag{background:#ffe0e0;display:block}
details{margin:.3rem 0}input[type=search]{width:20rem;padding:.3rem;margin:.5rem 0}"""

# Sort a table by a click on a header (numbers as numbers), and filter its rows by any text.
SCRIPT = """<script>
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("th");
  heads.forEach(function (th, column) {
    th.classList.add("sort");
    th.addEventListener("click", function () {
      var up = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value || a.cells[column].textContent,
            y = b.cells[column].dataset.value || b.cells[column].textContent,
            nx = parseFloat(x), ny = parseFloat(y),
            order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
document.querySelectorAll("input[data-filter]").forEach(function (input) {
  var table = document.getElementById(input.dataset.filter);
  input.addEventListener("input", function () {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    Array.from(table.tBodies[0].rows).forEach(function (row) {
      var text = row.textContent.toLowerCase();
      row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    });
  });
});
</script>"""


def png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _page(title: str, body: str, key: str = "") -> str:
    meta = f'<meta name="autograder-source" content="{key}">' if key else ""
    return (f"<!doctype html><html lang=en><meta charset=utf-8>{meta}"
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style><body><h1>{html.escape(title)}</h1>{body}"
            f"{SCRIPT}</body></html>\n")


def course_pictures(course: Course) -> ModuleType | None:
    """The course's pictures.py beside its checks, if it has one."""
    path = course.checks / "pictures.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("autograder_course_pictures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summary(results: list[Final]) -> dict:
    """The class's figures; checks failed most often are counted over the labs students handed in."""
    totals = [r.total for r in results]
    handed = [(r, submitted_labs(r)) for r in results]
    checks = [(c, f"{c['unit']}: {c['label']}") for r, labs in handed for c in r.checks if c["lab"] in labs]
    failures = Counter(name for c, name in checks if not c["passed"])
    counted = Counter(name for _, name in checks)
    return {"students": len(results), "mean": statistics.mean(totals) if totals else 0.0,
            "median": statistics.median(totals) if totals else 0.0, "totals": totals,
            "failures": failures.most_common(), "pass_rate": {k: 1 - failures[k] / n for k, n in counted.items()},
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


def _source(text: str, flagged: tuple[int, ...]) -> str:
    lines = text.splitlines() or [""]
    return "<pre>" + "".join(
        f'<span class=flag title="flagged">{n:>3}  {html.escape(line)}</span>' if n in flagged
        else f"{n:>3}  {html.escape(line)}\n" for n, line in enumerate(lines, start=1)) + "</pre>"


class Pages:
    """Renders the pages of one output folder for its labs."""

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

    def student(self, result: Final, key: str = "") -> str:
        rows = []
        handed = submitted_labs(result)
        for lab in (lab for lab in self.course.labs if lab.name in self.labs):
            if lab.name not in handed:
                worth = sum(result.max_units[u] for u in lab.units)
                rows.append(f"<h2>{html.escape(lab.name)}: 0 / {worth:g}</h2><p class=note>No notebook of this "
                            f"lab was handed in ({html.escape(lab.exercise.name)}).</p>")
                continue
            for unit in lab.units:
                final, auto = result.units[unit], result.auto[unit]
                score = f"{final:g} / {result.max_units[unit]:g}" + (
                    f" <span class=note>(autograded {auto:g})</span>" if final != auto else "")
                rows.append(f"<h2>{html.escape(unit)}: {score}</h2><table>")
                for c in (c for c in result.checks if c["unit"] == unit):
                    verdict = "<span class=pass>passed</span>" if c["passed"] else "<span class=fail>failed</span>"
                    hidden = " <span class=note>(hidden check)</span>" if c["hidden"] else ""
                    why = "" if c["passed"] else html.escape(c["message"])
                    rows.append(f"<tr><td>{verdict}</td><td>{html.escape(c['label'])}{hidden}<br><span class=note>"
                                f"{why}</span></td><td class=num>{c['points'] if c['passed'] else 0:g}/{c['points']:g}"
                                "</td></tr>")
                rows.append("</table>")
        auto = sum(result.auto.values())
        status = "" if result.status == "ok" else f"<p class=fail>{html.escape(result.status)}</p>"
        body = (f"<p>Total <b>{result.total:g} / {result.max_total:g}</b>"
                + (f" <span class=note>(autograded {auto:g})</span>" if auto != result.total else "")
                + f" <span class=note>({', '.join(self.labs)})</span></p>{status}" + "".join(rows)
                + self._figures(result.student))
        return _page(f"Feedback for {result.student}", body, key)

    def _queue(self, queue) -> str:
        if not queue:
            return "<h2>To review</h2><p class=note>Nothing to review.</p>"
        items = []
        for e in queue:
            details = ""
            if e.unit:
                source = self.book.sources(e.unit).get(e.student)
                if source:
                    details += _source(source, e.lines)
            details += "".join(f"<p class=fail>{html.escape(m)}</p>" for m in e.messages)
            line = f"<b>{html.escape(e.student)}</b>: {html.escape(e.text)}"
            items.append(f"<li><details><summary>{line}</summary>{details}</details></li>" if details
                         else f"<li>{line}</li>")
        return f"<h2>To review ({len(queue)})</h2><ul id=queue>{''.join(items)}</ul>"

    def summary(self, results: list[Final], queue=(), changed=()) -> str:
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
        head = "".join(f"<th class=num>{html.escape(lab.name)}</th>" for lab in labs)
        table = "".join(
            f"<tr><td><a href=\"{quote(r.student)}/feedback.html\">{html.escape(r.student)}</a></td>"
            + "".join(f"<td class=num>{sum(r.units[u] for u in lab.units):g}</td>" for lab in labs)
            + f"<td class=num>{r.total:g}</td><td class=num>{r.late_penalty:g}</td>"
            f"<td>{html.escape(r.status)}</td></tr>" for r in results)
        failed = "".join(f"<tr><td class=num>{n}</td><td>{html.escape(name)}</td></tr>" for name, n in s["failures"][:20])
        moved = "".join(f"<li>{html.escape(student)}: {old:g} -&gt; {new:g}</li>" for student, old, new in changed)
        body = (f"<p>{s['students']} students; mean {s['mean']:.1f}, median {s['median']:.1f} of {max_total:g}; "
                f"{s['not_ok']} whose status is not ok. Sandbox: {html.escape(self.sandbox)}.</p>"
                + (f"<h2>Totals changed since the previous report</h2><ul id=changed>{moved}</ul>" if moved else "")
                + self._queue(queue)
                + f"<h2>Students</h2><input type=search placeholder=\"filter: any words\" data-filter=students>"
                f"<table id=students class=sortable><thead><tr><th>student</th>{head}<th class=num>total</th>"
                f"<th class=num>late</th><th>status</th></tr></thead><tbody>{table}</tbody></table>"
                f"<h2>Scores</h2>{histogram}"
                f"<h2>Checks failed most often</h2><p class=note>Over the labs each student handed in.</p>"
                f"<table><tr><th class=num>students</th><th>check</th></tr>{failed}</table>"
                f"<h2>Pass rate per check</h2>{passing}")
        return _page("Class summary", body)
