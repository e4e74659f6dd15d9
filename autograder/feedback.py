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
import math
import statistics
from collections import Counter
from types import ModuleType
from urllib.parse import quote

from . import artifacts
from .course import Course
from .final import Final
from .gradebook import Gradebook
from .reports import submitted_labs

STYLE = """body{font-family:system-ui,sans-serif;max-width:80rem;margin:1.5rem auto;padding:0 1rem;color:#222;
line-height:1.4}h1{font-size:1.5rem;margin:0 0 .5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin:1.2rem 0 .3rem}table{border-collapse:collapse;width:100%}
td,th{padding:.3rem .5rem;border-bottom:1px solid #eee;text-align:left;vertical-align:top;overflow-wrap:anywhere}
thead th{position:sticky;top:0;background:#f3f4f6;border-bottom:1px solid #ccc}tbody tr:hover{background:#f6f8fa}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums;width:1%}.pass{color:#1a7f37}.fail{color:#c62828}
.note{color:#666;font-size:.9rem}.msg{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.9rem;color:#444;margin:.2rem 0}
td.status span{display:block}td.verdict{white-space:nowrap;width:1%}tr.review td.status{color:#9a3412}td.status.ok{color:#1a7f37}
figure{display:inline-block;margin:.5rem;vertical-align:top}figcaption{font-size:.9rem;color:#444}img{max-width:100%}
th.sort{cursor:pointer;user-select:none}th.sort:after{content:" \\2195";color:#aaa}
th[aria-sort=ascending]:after{content:" \\2191";color:#222}th[aria-sort=descending]:after{content:" \\2193";color:#222}
pre{background:#f6f8fa;padding:.5rem;overflow-x:auto;font-size:.85rem}pre .flag{background:#ffe0e0;display:block}
#queue li{margin:.3rem 0}.bar{display:inline-block;width:6rem;height:.7rem;background:#e5e7eb;margin-right:.4rem}
.bar i{display:block;height:100%;background:#2da44e}summary{cursor:pointer}input[type=search]{width:24rem;max-width:100%;padding:.3rem;margin:.5rem 0}"""

# Sort a table by a click on a header (a `num` column by number, the others as text, "2" before
# "10"), and filter its rows: each word typed must occur in the row.
SCRIPT = r"""<script>
var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = Array.from(table.tHead.rows[0].cells);
  heads.forEach(function (th, column) {
    var numeric = th.classList.contains("num");
    function sort() {
      var up = th.getAttribute("aria-sort") !== "ascending", body = table.tBodies[0];
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      Array.from(body.rows).map(function (row) {
        var cell = row.cells[column], text = "value" in cell.dataset ? cell.dataset.value : cell.textContent.trim();
        return {row: row, key: numeric ? Number(text) : text};
      }).sort(function (a, b) {
        var order = numeric ? (a.key > b.key) - (a.key < b.key) : collator.compare(a.key, b.key);
        return up ? order : -order;
      }).forEach(function (item) { body.appendChild(item.row); });
    }
    th.classList.add("sort");
    th.tabIndex = 0;
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  });
});
document.querySelectorAll("input[data-filter]").forEach(function (input) {
  var table = document.getElementById(input.dataset.filter), count = document.getElementById(input.dataset.filter + "-shown");
  function filter() {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean), rows = Array.from(table.tBodies[0].rows);
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    });
    count.textContent = rows.filter(function (row) { return !row.hidden; }).length + " of " + rows.length + " shown";
  }
  input.addEventListener("input", filter);
  filter();
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
    passed = Counter(name for c, name in checks if c["passed"])
    counted = Counter(name for _, name in checks)
    return {"students": len(results), "mean": statistics.mean(totals) if totals else 0.0,
            "median": statistics.median(totals) if totals else 0.0, "totals": totals,
            "failures": failures.most_common(), "passed": passed, "counted": counted,
            "pass_rate": {k: 1 - failures[k] / n for k, n in counted.items()},
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


def _points(x: float) -> str:
    return f"{round(x, 2):g}"


def _link(student: str) -> str:
    """A link to a student's feedback page: the folder's name URL-quoted whole (any name is a
    student id, `#`, `?`, `%` and `:` included), shown escaped."""
    return f'<a href="{quote(student, safe="")}/feedback.html">{html.escape(student)}</a>'


def _status(status: str) -> str:
    """A row's status as a table cell: each reason on its own line, the text exactly the status."""
    if status == "ok":
        return "<td class='status ok'>ok</td>"
    parts = status.split("; ")
    return "<td class=status>" + "".join(
        f"<span>{html.escape(part)}{'; ' if n < len(parts) - 1 else ''}</span>" for n, part in enumerate(parts)) + "</td>"


def _short_names(names: list[str]) -> dict[str, str]:
    """A column header per lab: `lab01` for `lab01_linear_module`, when those are unique."""
    short = {name: name.split("_")[0] for name in names}
    return short if len(set(short.values())) == len(short) else {name: name for name in names}


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
        reference = self.reference.kept if self.reference else {}
        if not kept:
            # Kept arrays are named for the unit that made them; labs that draw nothing say nothing.
            units = {u for lab in self.course.labs if lab.name in self.labs for u in lab.units}
            drawn = any(name.split()[0] in units for name in reference)
            return "<p class=note>No pictures: the checks that draw them did not get that far.</p>" if drawn else ""
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
        sections = []
        handed = submitted_labs(result)
        for lab in (lab for lab in self.course.labs if lab.name in self.labs):
            got, worth = (sum(points[u] for u in lab.units) for points in (result.units, result.max_units))
            head = f"<h2>{html.escape(lab.name)}: {_points(got)} / {_points(worth)}</h2>"
            if lab.name not in handed:
                sections.append(f"<section data-lab=\"{html.escape(lab.name)}\">{head}<p class=fail>No notebook of this "
                                f"lab was handed in ({html.escape(lab.exercise.name)}).</p></section>")
                continue
            units = []
            for unit in lab.units:
                final, auto = result.units[unit], result.auto[unit]
                score = f"{_points(final)} / {_points(result.max_units[unit])}" + (
                    f" <span class=note>(autograded {_points(auto)})</span>" if final != auto else "")
                checks = "".join(
                    ("<tr><td class='verdict pass'>passed</td>" if c["passed"] else "<tr><td class='verdict fail'>failed</td>")
                    + f"<td>{html.escape(c['label'])}" + (" <span class=note>(hidden check)</span>" if c["hidden"] else "")
                    + ("" if c["passed"] or not c["message"] else f"<div class=msg>{html.escape(c['message'])}</div>")
                    + f"</td><td class=num>{_points(c['points'] if c['passed'] else 0)} / {_points(c['points'])}</td></tr>"
                    for c in result.checks if c["unit"] == unit)
                units.append(f"<h3>{html.escape(unit)}: {score}</h3><table>{checks}</table>")
            sections.append(f"<section data-lab=\"{html.escape(lab.name)}\">{head}{''.join(units)}</section>")
        auto = sum(result.auto.values())
        status = "" if result.status == "ok" else "<ul class=fail>" + "".join(
            f"<li>{html.escape(part)}</li>" for part in result.status.split("; ")) + "</ul>"
        body = (f"<p>Total <b>{_points(result.total)} / {_points(result.max_total)}</b>"
                + (f" <span class=note>(autograded {_points(auto)})</span>" if auto != result.total else "")
                + f" <span class=note>({', '.join(self.labs)})</span></p>{status}" + "".join(sections)
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
            details += "".join(f"<div class=msg>{html.escape(m)}</div>" for m in e.messages)
            line = f"{_link(e.student)}: {html.escape(e.text)}"
            items.append(f"<li><details><summary>{line}</summary>{details}</details></li>" if details
                         else f"<li>{line}</li>")
        return (f"<h2>To review ({len(queue)})</h2><p class=note>Open an entry for the unit's source (flagged "
                f"lines marked) and the failing checks' messages.</p><ul id=queue>{''.join(items)}</ul>")

    def summary(self, results: list[Final], queue=(), changed=()) -> str:
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        s, max_total = summary(results), results[0].max_total
        fig, ax = plt.subplots(figsize=(7, 3))
        top = max(max_total, 1)  # bins of 10 points, the last one closed: full marks are in the top bin
        ax.hist(s["totals"], bins=[*range(0, math.ceil(top), 10), top], color="tab:blue", edgecolor="white")
        ax.set_xlabel(f"total (of {max_total:g})")
        ax.set_ylabel("students")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        histogram = png(fig)
        # A table, not a picture: every check's name whole, sortable, and a few bytes a row.
        passing = "".join(
            f"<tr><td>{html.escape(name)}</td><td class=num data-value={s['passed'][name]}>{s['passed'][name]} of "
            f"{s['counted'][name]}</td><td class=num data-value={rate:.4f}><span class=bar><i style='width:{rate:.0%}'>"
            f"</i></span>{rate:.0%}</td></tr>"
            for name, rate in sorted(s["pass_rate"].items(), key=lambda kv: (kv[1], kv[0])))
        labs = [lab for lab in self.course.labs if lab.name in self.labs]
        short = _short_names([lab.name for lab in labs])
        head = "".join(f"<th class=num title=\"{html.escape(lab.name)}\">{html.escape(short[lab.name])}</th>"
                       for lab in labs)
        rows = []
        for r in results:
            handed = submitted_labs(r)
            cells = "".join(
                f"<td class=num>{_points(sum(r.units[u] for u in lab.units))}</td>" if lab.name in handed
                else "<td class='num note' data-value=0 title=\"not handed in\">-</td>" for lab in labs)
            rows.append(f"<tr{' class=review' if r.reviews else ''}><td>{_link(r.student)}</td>{cells}"
                        f"<td class=num>{_points(r.total)}</td><td class=num data-value={r.late_penalty:g}>"
                        f"{'-' + _points(r.late_penalty) if r.late_penalty else ''}</td>{_status(r.status)}</tr>")
        failed = "".join(f"<tr><td class=num>{n}</td><td class=num>{s['counted'][name]}</td><td>{html.escape(name)}</td></tr>"
                         for name, n in s["failures"][:20])
        moved = "".join(f"<li>{_link(student)}: {_points(old)} -&gt; {_points(new)}</li>" for student, old, new in changed)
        body = (f"<p>{s['students']} students; mean {s['mean']:.1f}, median {s['median']:.1f} of {max_total:g}; "
                f"{s['not_ok']} whose status is not ok. Labs: {html.escape(', '.join(self.labs))}. "
                f"Sandbox: {html.escape(self.sandbox)}.</p>"
                + (f"<h2>Totals changed since the previous report</h2><ul id=changed>{moved}</ul>" if moved else "")
                + self._queue(queue)
                + "<h2>Students</h2><label>Filter <input type=search placeholder=\"any words: a name, review, late...\" "
                f"data-filter=students></label> <span class=note id=students-shown></span>"
                "<p class=note>Click a header to sort by it; click again for the other way round.</p>"
                f"<table id=students class=sortable><thead><tr><th>student</th>{head}"
                f"<th class=num title=\"of {max_total:g}\">total</th><th class=num title=\"points lost to late work\">"
                f"late</th><th>status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
                f"<h2>Scores</h2>{histogram}"
                f"<h2>Checks failed most often</h2><p class=note>Over the labs each student handed in.</p>"
                f"<table id=failed><thead><tr><th class=num>failed by</th><th class=num>of</th><th>check</th></tr>"
                f"</thead><tbody>{failed}</tbody></table>"
                f"<h2>Pass rate per check</h2><p class=note>Over the labs each student handed in; the lowest first.</p>"
                f"<table id=rates class=sortable><thead><tr><th>check</th><th class=num>passed by</th>"
                f"<th class=num>pass rate</th></tr></thead><tbody>{passing}</tbody></table>")
        return _page("Class summary", body)
