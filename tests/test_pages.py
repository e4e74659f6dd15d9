"""summary.html and feedback.html as a TA reads them: opened in headless Chromium, clicked, typed
into, measured at a 1280 px wide window.

One grading run of a small class (labs 01-02), then the pages it wrote, and a summary of a
200-student class with every lab (drawn from final grades made up here: the layout of a full
course, without grading one). Screenshots of the pages land in the folder printed at the start.
"""
from __future__ import annotations

import base64
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from autograder.feedback import Pages
from autograder.final import Final
from autograder.grade import GRADEBOOK
from autograder.gradebook import Gradebook
from autograder.review import Entry
from conftest import code, finals_of, grade_class, in_background, reference_code, shared_root, write_student

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# As root, on a machine with no network: no sandbox, no GPU, and nothing that phones home.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTH, HEIGHT = 1280, 900
ODD = "o'brien, <b>bob & co"
LAB01, LAB02 = "lab01_linear_module", "lab02_softmax"
# A lab 01 whose worker dies as the notebook loads, and a softmax that reaches outside plain code in
# several ways and raises a long error: a long status.
DIES = code("""
    import os
    os._exit(3)
    """)
LONG = code("""
    def softmax(x, dim=-1):
        exec("pass")
        eval("1")
        helper = getattr(torch, "ex" + "p")
        raise RuntimeError("the denominator wandered off: " + "every single score was divided by something else " * 12)
    """)
# A Linear that never adds its bias: a total below 10, which sorts after 30 as text.
NO_BIAS = reference_code("Linear").replace("y = y + self.bias", "y = y")
HANDED = {"reference": [LAB01, LAB02], "wrong_softmax": [LAB01, LAB02], "long_status": [LAB01, LAB02],
          ODD: [LAB01, LAB02], "lab01_only": [LAB01]}


CLASS: list = []


def start_early(config) -> None:
    """The class, graded in the background as soon as the tests are collected (tests/conftest.py)."""
    if not CLASS:
        CLASS.append(in_background(grade_the_class))


def grade_the_class() -> tuple[dict[str, Final], Path]:
    root = Path(tempfile.mkdtemp(prefix="pages-", dir=shared_root()))
    write_student(root / "class", "reference", ["lab01", "lab02"])
    write_student(root / "class", "wrong_softmax", ["lab01", "lab02"],
                  {"softmax": reference_code("softmax").replace("torch.exp(shifted)", "torch.exp2(shifted)")})
    write_student(root / "class", "long_status", ["lab01", "lab02"], {"Linear": DIES, "softmax": LONG})
    write_student(root / "class", ODD, ["lab01", "lab02"])
    write_student(root / "class", "lab01_only", ["lab01"], {"Linear": NO_BIAS})
    grade_class(root / "class", root / "graded", "-j", "2", "--min-wall", "30")
    return finals_of(root / "graded"), root / "graded"


@pytest.fixture(scope="module")
def graded(request) -> tuple[dict[str, Final], Path]:
    start_early(request.config)
    return CLASS[0].result()


def made_up_class(course, book: Gradebook, n: int = 200) -> tuple[dict[str, Final], str]:
    """Final grades of `n` students over every lab, with long names and long statuses, and their
    summary.html."""
    rng = random.Random(3)
    labs = [lab.name for lab in course.labs]
    points = course.unit_points()
    reasons = [f"{LAB02}: the lab was stopped: it took more than this lab's time budget of 120 s (20 times what "
               "the reference solution needs, plus 10 s)",
               "review: train_online uses exec, eval, getattr with a computed name, globals",
               "overridden: template_update 0 -> 15 (the TA read it: a correct rule written with a loop)",
               "late: lab05_minibatch_training 3 days (-12)", "similar: softmax with student_17"]
    finals = {}
    for i in range(n):
        student = (f"a_rather_long_identifier_without_any_spaces_{i}" if i % 14 == 7
                   else f"Étudiante numéro {i}, «groupe B» & co" if i % 14 == 0
                   else str(9000 + 37 * i) if i % 5 == 0 else f"student_{i}")  # student numbers of 4 and 5 digits
        got = {u: rng.choice([0.0, points[u] / 3, points[u] / 2, points[u]]) for u in points}
        checks = [{"lab": lab.name, "unit": u, "label": f"check {k} of {u}", "passed": bool(k) or got[u] == points[u],
                   "hidden": False, "message": "", "points": points[u] / 2} for lab in course.labs
                  for u in lab.units for k in range(2)]
        finals[student] = Final(student, labs, got, dict(got), dict(points), sum(got.values()), sum(points.values()),
                                late_penalty=rng.choice([0, 0, 0, 2.5, 12]),
                                notes=rng.sample(reasons, rng.choice([0, 0, 1, 2, 5])), checks=checks)
    return finals, Pages(course, book, labs).summary(list(finals.values()))


@pytest.fixture(scope="module")
def big_class(course, tmp_path_factory) -> tuple[dict[str, Final], Path]:
    """summary.html of 200 students over all five labs: the layout of a full course."""
    folder = tmp_path_factory.mktemp("big")
    book = Gradebook(folder / GRADEBOOK)
    try:
        book.set_settings({"sandbox": "namespaces: mount, PID, IPC, network and UTS namespaces, a read-only "
                                      "allow-list root, a uid of its own per worker"})
        finals, page = made_up_class(course, book)
    finally:
        book.close()
    (folder / "summary.html").write_text(page, encoding="utf-8")
    return finals, folder / "summary.html"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots of the pages: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser():
    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).is_file():
            pytest.fail(f"{program} is missing: apt-get install chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the pages' script errors
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    # The viewport itself is WIDTH wide, whatever the window's decorations take.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def screenshot(driver, path: Path) -> None:
    """The page beyond what the window shows (its first 6000 px: a long class's table goes on)."""
    height = min(6000, driver.execute_script("return document.documentElement.scrollHeight"))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": {
        "x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def rows(driver) -> list[dict]:
    """The students table's visible rows: each cell's text by its column's header."""
    return driver.execute_script("""
        var table = document.getElementById("students"),
            heads = Array.from(table.tHead.rows[0].cells).map(function (th) { return th.textContent.trim(); });
        return Array.from(table.tBodies[0].rows).filter(function (row) { return !row.hidden && row.offsetParent; })
            .map(function (row) {
                var found = {};
                Array.from(row.cells).forEach(function (cell, i) { found[heads[i]] = cell.textContent; });
                return found;
            });""")


def click_header(driver, name: str) -> None:
    heads = [th for th in driver.find_elements(By.CSS_SELECTOR, "#students thead th") if th.text.strip() == name]
    assert len(heads) == 1, f"no single header {name!r}"
    heads[0].click()


def totals(driver) -> list[float]:
    return [float(r["total"]) for r in rows(driver)]


def by_total(finals: dict[str, Final], reverse: bool = False) -> list[float]:
    """The totals in order, as the page shows them (to 2 decimals)."""
    return sorted((round(f.total, 2) for f in finals.values()), reverse=reverse)


def clipped(driver) -> list[str]:
    """Cells of the students table whose content is wider than the cell (cut off or hidden)."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll("#students th, #students td"))
            .filter(function (c) { return c.scrollWidth > c.clientWidth; })
            .map(function (c) { return c.textContent + " (" + c.scrollWidth + " > " + c.clientWidth + ")"; });""")


def widths(driver) -> dict:
    return driver.execute_script("""
        var table = document.getElementById("students").getBoundingClientRect();
        return {viewport: document.documentElement.clientWidth, page: document.documentElement.scrollWidth,
                left: table.left, right: table.right};""")


def type_filter(driver, text: str) -> None:
    """Replace what the filter box holds with `text`, keystroke by keystroke, as a TA would."""
    box = driver.find_element(By.CSS_SELECTOR, "input[data-filter=students]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE, text)


# ---- summary.html ------------------------------------------------------------------------------

def test_class_totals_sort_differently_as_text_and_as_numbers(graded, big_class):
    """What the sorting tests below rely on: ordering the totals as text would give another order."""
    for found in (graded[0], big_class[0]):
        shown = [f"{round(f.total, 2):g}" for f in found.values()]
        assert sorted(shown, key=float) != sorted(shown)


def test_clicking_total_sorts_rows_by_total_ascending_then_descending(graded, browser):
    open_page(browser, graded[1] / "summary.html")
    click_header(browser, "total")
    assert totals(browser) == by_total(graded[0])
    click_header(browser, "total")
    assert totals(browser) == by_total(graded[0], reverse=True)


def test_clicking_total_sorts_two_hundred_students_by_number(big_class, browser):
    open_page(browser, big_class[1])
    click_header(browser, "total")
    assert totals(browser) == by_total(big_class[0])
    click_header(browser, "total")
    assert totals(browser) == by_total(big_class[0], reverse=True)
    click_header(browser, "student")
    names = [r["student"] for r in rows(browser)]
    numbers, named = [n for n in names if n.isdigit()], [n for n in names if n.startswith("student_")]
    assert numbers == sorted(numbers, key=int) and named == sorted(named, key=lambda n: int(n.split("_")[1]))
    assert names.index(numbers[-1]) < names.index(named[0])  # digits before letters, as in a dictionary


def test_typing_in_the_filter_leaves_only_matching_rows(graded, browser):
    open_page(browser, graded[1] / "summary.html")
    everyone = {r["student"] for r in rows(browser)}
    assert everyone == set(graded[0])
    type_filter(browser, "REVIEW")
    assert {r["student"] for r in rows(browser)} == {s for s, f in graded[0].items() if "review" in f.status}
    type_filter(browser, "bob brien")
    assert [r["student"] for r in rows(browser)] == [ODD]
    type_filter(browser, "")
    assert {r["student"] for r in rows(browser)} == everyone


def test_students_table_fits_a_1280px_window_with_every_status_whole(graded, browser, screenshots):
    open_page(browser, graded[1] / "summary.html")
    screenshot(browser, screenshots / "summary.png")
    assert clipped(browser) == []
    size = widths(browser)
    assert size["left"] >= 0 and size["right"] <= size["viewport"] and size["page"] <= size["viewport"], size
    statuses = {r["student"]: r["status"] for r in rows(browser)}
    assert statuses == {s: f.status for s, f in graded[0].items()}
    assert len(statuses["long_status"]) > 100 and "…" not in "".join(statuses.values())


def test_two_hundred_students_over_five_labs_fit_a_1280px_window(big_class, browser, screenshots):
    open_page(browser, big_class[1])
    screenshot(browser, screenshots / "summary-200.png")
    assert clipped(browser) == []
    size = widths(browser)
    assert size["left"] >= 0 and size["right"] <= size["viewport"] and size["page"] <= size["viewport"], size
    assert {r["student"]: r["status"] for r in rows(browser)} == {s: f.status for s, f in big_class[0].items()}


def test_an_odd_name_is_shown_escaped_and_its_link_opens_its_feedback(graded, browser):
    open_page(browser, graded[1] / "summary.html")
    links = [a for a in browser.find_elements(By.CSS_SELECTOR, "#students a") if a.text == ODD]
    assert len(links) == 1
    assert links[0].get_attribute("href").endswith(f"/{quote(ODD, safe='')}/feedback.html")
    assert browser.find_elements(By.CSS_SELECTOR, "#students b") == []  # the name's <b> is text, not markup
    links[0].click()
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Feedback for {ODD}"
    assert browser.title == f"Feedback for {ODD}" and browser.find_elements(By.CSS_SELECTOR, "h1 b") == []


def test_checks_failed_most_often_count_only_labs_handed_in(graded, browser):
    open_page(browser, graded[1] / "summary.html")
    shown = browser.execute_script("""
        return Array.from(document.querySelectorAll("#failed tbody tr")).map(function (row) {
            var cells = Array.from(row.cells).map(function (cell) { return cell.textContent; });
            return [cells[cells.length - 1], Number(cells[0]), Number(cells[1])]; });""")
    checks = [(f"{c['unit']}: {c['label']}", c) for s, f in graded[0].items() for c in f.checks if c["lab"] in HANDED[s]]
    failed = Counter(name for name, c in checks if not c["passed"])
    handed = {name: sum(c["lab"] in labs for labs in HANDED.values()) for name, c in checks}
    got = {name: (n, of) for name, n, of in shown}
    assert got and all(got[name] == (failed[name], handed[name]) for name in got)
    # the checks failed most often, whatever the table leaves out
    assert min(n for n, _ in got.values()) >= max((n for name, n in failed.items() if name not in got), default=0)


def test_the_review_queue_comes_first(graded, browser):
    open_page(browser, graded[1] / "summary.html")
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    entries = browser.find_elements(By.CSS_SELECTOR, "#queue > li")
    assert headings[0] == f"To review ({len(entries)})" and headings.index("Students") > 0, headings
    who = [e.find_element(By.TAG_NAME, "a").text for e in entries]
    assert who.count("long_status") == 3, who  # its two flagged units and its stopped lab
    # The reference's units, handed in again word for word (or all but a line), are similar.
    assert {"reference", ODD, "lab01_only"} <= set(who), who


def test_a_queue_entry_opens_on_the_units_source_with_its_flagged_lines_marked(graded, course, browser, tmp_path):
    entry = Entry("long_status", "review", "review: softmax uses exec, eval", "softmax", (2, 3),
                  ("softmax(x) raised RuntimeError: the denominator wandered off",))
    book = Gradebook(graded[1] / GRADEBOOK)
    try:
        page = Pages(course, book, [LAB01, LAB02]).summary(list(graded[0].values()), [entry])
    finally:
        book.close()
    (tmp_path / "summary.html").write_text(page, encoding="utf-8")
    open_page(browser, tmp_path / "summary.html")
    item = browser.find_element(By.CSS_SELECTOR, "#queue > li")
    assert not item.find_element(By.TAG_NAME, "pre").is_displayed()
    item.find_element(By.TAG_NAME, "summary").click()
    flagged = item.find_elements(By.CSS_SELECTOR, "pre .flag")
    assert [line.text.split(maxsplit=1) for line in flagged] == [["2", 'exec("pass")'], ["3", 'eval("1")']]
    assert {line.value_of_css_property("background-color") for line in flagged} != {"rgba(0, 0, 0, 0)"}
    assert entry.messages[0] in item.text


# ---- feedback pages -----------------------------------------------------------------------------

def test_feedback_of_a_lab_not_handed_in_is_one_line(graded, browser, screenshots):
    open_page(browser, graded[1] / "lab01_only" / "feedback.html")
    screenshot(browser, screenshots / "feedback-lab01-only.png")
    lab02 = browser.find_elements(By.CSS_SELECTOR, f"[data-lab={LAB02}]")
    assert len(lab02) == 1 and "No notebook" in lab02[0].text and lab02[0].find_elements(By.TAG_NAME, "tr") == []
    text = browser.find_element(By.TAG_NAME, "body").text
    softmax_checks = [c["label"] for c in graded[0]["reference"].checks if c["lab"] == LAB02]
    assert softmax_checks and not [label for label in softmax_checks if label in text]
    linear = browser.find_elements(By.CSS_SELECTOR, f"[data-lab={LAB01}] tr")
    assert len(linear) == len([c for c in graded[0]["lab01_only"].checks if c["lab"] == LAB01])


def test_feedback_shows_each_failed_checks_message(graded, browser, screenshots):
    open_page(browser, graded[1] / "long_status" / "feedback.html")
    screenshot(browser, screenshots / "feedback-long-status.png")
    text = browser.find_element(By.TAG_NAME, "body").text
    failed = [c for c in graded[0]["long_status"].checks if not c["passed"]]
    assert failed and all(" ".join(c["message"].split())[:80] in " ".join(text.split()) for c in failed)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= WIDTH
