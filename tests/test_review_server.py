"""``annotate review DIR --serve``: a real run's folder served, driven in headless Chromium and by plain
HTTP requests, and checked on disk; a later run keeps what a person checked."""
from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from annotator.formats import pts_text, read_pts
from annotator.review import TILE
from annotator.index import COLUMNS, write_index
from conftest import PHOTOS, ROOT, annotate, both_runs, box_of, index_rows, outputs

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's chromium, chromium-driver
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900"]
SCREENSHOT = ROOT / "docs" / "review_page.png"  # written again with UPDATE_SCREENSHOT=1
REFIT_PICTURE = ROOT / "docs" / "refit.png"  # likewise
TURNED = "1051618982_1"  # an AFW photo with two faces; the ground truth's is the second the detector finds
PLACED = [36, 45, 8, 30]  # outer eye corners, chin, nose tip
WAIT = 30  # seconds, for anything the page does


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> Path:
    """The test photos (7 faces) annotated once as .pts (``pts/``) and as JSON (``json/``); tests copy them."""
    return both_runs(tmp_path_factory.mktemp("served"), data)


@pytest.fixture(scope="module")
def turned(tmp_path_factory, data) -> Path:
    """``photos/upright.jpg`` (an AFW photo) and ``photos/turned.jpg`` (the same turned by 90 degrees
    clockwise, cv2.rotate) annotated with the CNN detector into ``pts/`` (the network gets both right);
    ``truth/`` holds the ground truth of both faces, turned with the photo for ``turned.pts``, as 0-based
    arrays (``.npy``)."""
    root = tmp_path_factory.mktemp("turned")
    (root / "photos").mkdir()
    (root / "truth").mkdir()
    image = cv2.imread(str(data / "300w" / "afw" / f"{TURNED}.jpg"))
    truth = read_pts(data / "300w" / "afw" / f"{TURNED}.pts")
    cv2.imwrite(str(root / "photos" / "upright.jpg"), image)
    cv2.imwrite(str(root / "photos" / "turned.jpg"), cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE))
    np.save(root / "truth" / "upright_2.npy", truth)
    np.save(root / "truth" / "turned.npy", np.stack([image.shape[0] - 1 - truth[:, 1], truth[:, 0]], 1))
    # the upright scan: it finds the frontal face of the turned photo, not its profile face (one turned.pts)
    annotate(root / "photos", "--out", root / "pts", "-j", "1", "--orientation", "upright", detector="cnn")
    assert {p.name for p in (root / "pts").glob("*.pts")} == {"upright_1.pts", "upright_2.pts", "turned.pts"}
    assert face_error(read_pts(root / "pts" / "upright_2.pts"), np.load(root / "truth" / "upright_2.npy")) < 0.05
    assert face_error(read_pts(root / "pts" / "turned.pts"), np.load(root / "truth" / "turned.npy")) < 0.05
    return root


def laid_upright(out: Path, truth: np.ndarray) -> None:
    """Make ``out/turned.pts`` wrong as a network that knows only upright faces gets it: the face's shape
    turned back upright, laid across the turned face."""
    centre = truth.mean(0)
    (out / "turned.pts").write_text(pts_text((truth - centre) @ np.array([[0, -1], [1, 0]]) + centre))


def face_error(points: np.ndarray, truth: np.ndarray) -> float:
    """The accuracy metric: mean point distance / sqrt(w * h) of the truth's box."""
    return float(np.linalg.norm(points - truth, axis=1).mean() / np.sqrt(np.prod(np.ptp(truth, axis=0))))


def files_of(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (outputs, faces.csv, the review's kept points), byte for byte."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def copy_run(runs: Path, fmt: str, tmp_path: Path) -> Path:
    out = tmp_path / fmt
    shutil.copytree(runs / fmt, out)
    return out


@dataclass
class Served:
    """A review server in a subprocess: its address (with the token) and the process."""

    url: str
    token: str
    port: int
    proc: subprocess.Popen

    def request(self, method: str, path: str, body: object = None, token: str | None = "") -> tuple[int, bytes]:
        """A plain HTTP request (the path sent as it is); ``token`` None sends no token header."""
        headers = {} if token is None else {"X-Annotate-Token": token or self.token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            connection.request(method, path, None if body is None else json.dumps(body), headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: object = None) -> dict:
        status, data = self.request(method, path, body)
        assert status == 200, (status, data)
        return json.loads(data)

    def save(self, face: str, action: str, move: tuple[float, float] = (0, 0), point: int = 8) -> dict:
        """Check ``face`` as a person would from another tab: ``action``, with ``point`` moved by ``move``."""
        current = self.json("GET", f"/api/faces/{face}")
        points = current["points"]
        points[point] = [points[point][0] + move[0], points[point][1] + move[1]]
        return self.json("POST", f"/api/faces/{face}", {"base": current["version"], "action": action, "points": points})


@contextmanager
def serving(out: Path, *args: str) -> Iterator[Served]:
    """``annotate review OUT --serve --port 0`` running, until the block ends."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "annotator", "review", str(out), "--serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not any("#token=" in line for line in lines):
            lines.append(proc.stdout.readline())
            if not lines[-1]:
                raise AssertionError(f"the review server ended: {proc.wait()}, {proc.stderr.read()}")
        url = re.search(r"http://\S+", "".join(lines)).group()
        port = int(re.match(r"http://127\.0\.0\.1:(\d+)/#token=", url).group(1))
        yield Served(url, url.split("#token=")[1], port, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


class Page:
    """The review page in a browser, driven with keys and drags as a person would."""

    def __init__(self, driver):
        from selenium.webdriver.support.ui import WebDriverWait
        self.driver, self.wait = driver, WebDriverWait(driver, WAIT)

    def shown(self, face: str, status: str | None = None) -> None:
        """Wait until ``face`` is shown with its 68 points (and its status starts with ``status``)."""
        from selenium.webdriver.common.by import By
        self.wait.until(lambda d: d.find_element(By.ID, "view").get_attribute("data-face") == face
                        and len(d.find_elements(By.CSS_SELECTOR, "circle.point")) == 68
                        and (status is None or d.find_element(By.ID, "status").text.startswith(status)))

    def keys(self, *sequence: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        ActionChains(self.driver).send_keys(*sequence).perform()

    def drag(self, point: int, dx: int, dy: int) -> None:
        """Drag ``point`` by (dx, dy) screen pixels; wait until the page shows the face as edited."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        circle = self.driver.find_element(By.CSS_SELECTOR, f"circle[data-point='{point}']")
        ActionChains(self.driver).click_and_hold(circle).move_by_offset(dx, dy).release().perform()
        self.wait.until(lambda d: "edited" in d.find_element(By.ID, "status").get_attribute("class"))

    def view(self, attribute: str) -> float:
        """A number the view carries (``scale``, ``roll``)."""
        from selenium.webdriver.common.by import By
        return float(self.driver.find_element(By.ID, "view").get_attribute(f"data-{attribute}"))

    def text(self, element: str) -> str:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.ID, element).text

    def points(self) -> np.ndarray:
        """The 68 points drawn, 0-based photo pixels (a point is drawn at its pixel's centre, + 0.5)."""
        return np.array(self.driver.execute_script(
            "return [...document.querySelectorAll('circle.point')].map((c) => [+c.getAttribute('cx') - 0.5, "
            "+c.getAttribute('cy') - 0.5]);"))

    def placed(self) -> list[int]:
        """The points marked as placed."""
        return sorted(self.driver.execute_script(
            "return [...document.querySelectorAll('circle.point.placed')].map((c) => +c.dataset.point);"))

    def on_screen(self, points: np.ndarray) -> np.ndarray:
        """Where 0-based photo ``points`` are on the screen (CSS pixels of the window)."""
        return np.array(self.driver.execute_script(
            "const m = document.getElementById('scene').getScreenCTM();"
            "return arguments[0].map(([x, y]) => { const p = new DOMPoint(x + 0.5, y + 0.5).matrixTransform(m);"
            "return [p.x, p.y]; });", np.asarray(points).tolist()))

    def go_to(self, face: str, faces: list[str]) -> None:
        """From the face shown, press the right arrow until ``face`` is shown."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        at = faces.index(self.driver.find_element(By.ID, "view").get_attribute("data-face"))
        self.keys(*[Keys.ARROW_RIGHT] * (faces.index(face) - at))
        self.shown(face)


def test_page_drags_a_point_saves_undoes_and_marks_not_a_face(runs, tmp_path):
    webdriver = browser_or_skip()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out = copy_run(runs, "pts", tmp_path)
    with serving(out) as served, chromium(webdriver) as driver:
        faces = [f["id"] for f in served.json("GET", "/api/faces")["faces"]]
        rows = {r["output"]: r for r in index_rows(out)}
        files = {f: out / served.json("GET", f"/api/faces/{f}")["output"] for f in faces}
        before = {f: files[f].read_bytes() for f in faces}
        points = {f: read_pts(files[f]) for f in faces}
        page = Page(driver)
        shown, keys, drag, wait = page.shown, page.keys, page.drag, page.wait

        driver.get(served.url)
        shown(faces[0], "not checked")  # the worst face first
        screenshot(driver, tmp_path)

        keys("1")  # 100%: a screen pixel is a photo pixel
        wait.until(lambda d: d.find_element(By.ID, "view").get_attribute("data-scale") == "1")
        roll = page.view("roll")
        assert roll == pytest.approx(served.json("GET", f"/api/faces/{faces[0]}")["roll"])  # shown upright
        drag(8, 7, -5)
        keys(Keys.ENTER)  # accept: saved, and on to the next face
        shown(faces[1])
        moved = read_pts(files[faces[0]]) - points[faces[0]]
        assert moved[8] == pytest.approx(photo_motion(roll, 7, -5), abs=6e-4)  # .pts: 3 decimals
        assert not np.delete(moved, 8, axis=0).any()
        row = {r["output"]: r for r in index_rows(out)}[files[faces[0]].name]
        assert (row["checked"], row["moved_px"]) == ("moved", f"{math.hypot(7, 5) / 68:.3f}")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["checked_at"])

        keys(Keys.ARROW_LEFT)
        shown(faces[0], "moved")
        keys("z")  # undo the drag, and save that
        wait.until(lambda d: "edited" in d.find_element(By.ID, "status").get_attribute("class"))
        keys(Keys.ENTER)
        shown(faces[1])
        assert files[faces[0]].read_bytes() == before[faces[0]]
        row = {r["output"]: r for r in index_rows(out)}[files[faces[0]].name]
        assert (row["checked"], row["moved_px"]) == ("accepted", "0.000")

        keys("x")  # the second face is not a face: its .pts goes, its row stays
        shown(faces[2])
        assert not files[faces[1]].exists()
        assert {r["output"]: r for r in index_rows(out)}[files[faces[1]].name]["checked"] == "not a face"

        served.save(faces[2], "accept", move=(1, 0))  # another tab saves the face this page shows
        keys(Keys.ENTER)
        wait.until(lambda d: "another tab" in d.find_element(By.ID, "message").text)
        assert read_pts(files[faces[2]])[8][0] == pytest.approx(points[faces[2]][8][0] + 1)
        keys("r")  # load the other tab's version, take this page's back (undo), and save it
        wait.until(lambda d: "loaded the saved version" in d.find_element(By.ID, "message").text)
        keys("z")
        wait.until(lambda d: "edited" in d.find_element(By.ID, "status").get_attribute("class"))
        keys(Keys.ENTER)
        shown(faces[3])
        assert files[faces[2]].read_bytes() == before[faces[2]]

        keys("e")  # zoomed to an eye, a drag still moves the point by screen pixels / scale, in photo pixels
        wait.until(lambda d: float(d.find_element(By.ID, "view").get_attribute("data-scale")) > 2)
        scale, roll = page.view("scale"), page.view("roll")
        drag(37, 10, 0)
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()  # save, stay
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("moved"))
        moved = read_pts(files[faces[3]]) - points[faces[3]]
        assert moved[37] == pytest.approx(photo_motion(roll, 10 / scale, 0), abs=6e-4)
        assert not np.delete(moved, 37, axis=0).any()

        driver.refresh()  # the state is on disk: the page opens at the first face nobody checked
        shown(faces[4], "not checked")
        keys(Keys.ARROW_LEFT)
        shown(faces[3], "moved")
        keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
        shown(faces[1], "not a face")
        assert "gone" in driver.find_element(By.ID, "view").get_attribute("class")
        keys(Keys.ARROW_LEFT)
        shown(faces[0], "accepted")
    assert {r["output"]: r for r in index_rows(out)}.keys() == rows.keys()  # rows are updated, never added


def test_the_contact_sheet_shows_a_turned_face_upright(turned, tmp_path):
    """``annotate review``'s sheet turns each face upright by its roll, as the page does: the face of the
    turned photo looks like the same face in the upright photo, not like it turned by 90 degrees."""
    listed = annotate("review", turned / "pts", "--worst", "3", "--list").stdout.splitlines()
    annotate("review", turned / "pts", "--worst", "3", "--per-page", "1", "--out", tmp_path / "sheet.png")
    tiles = {Path(line.split("\t")[1]).stem: cv2.imread(str(tmp_path / f"sheet-{i}.png"), cv2.IMREAD_GRAYSCALE)[:TILE]
             for i, line in enumerate(listed, 1)}

    def alike(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])

    upright, turned_face = tiles["upright_2"], tiles["turned"]
    assert alike(turned_face, upright) > 0.6
    assert alike(turned_face, upright) > alike(cv2.rotate(turned_face, cv2.ROTATE_90_COUNTERCLOCKWISE), upright) + 0.2


def test_a_turned_face_is_shown_upright_and_drags_map_back_to_the_photo(turned, tmp_path):
    webdriver = browser_or_skip()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    out = copy_run(turned, "pts", tmp_path)
    for name in ("turned", "upright_2"):  # the same face, its points right, once as photographed, once turned
        (out / f"{name}.pts").write_text(pts_text(np.load(turned / "truth" / f"{name}.npy")))
    rows = index_rows(out)  # and the same box: the upright face's, turned with the photo
    left, top, right, bottom = box_of(next(r for r in rows if r["output"] == "upright_2.pts"))
    width = cv2.imread(next(r for r in rows if r["output"] == "upright_2.pts")["input_path"]).shape[0]
    box = dict(zip(("left", "top", "right", "bottom"), map(str, (width - 1 - bottom, left, width - 1 - top, right))))
    rows = [{**r, **box} if r["output"] == "turned.pts" else r for r in rows]
    write_index(out, ([r[c] for c in COLUMNS] for r in rows))
    with serving(out) as served, chromium(webdriver) as driver:
        listing = served.json("GET", "/api/faces")["faces"]
        faces = [f["id"] for f in listing]
        face, upright = (next(f["id"] for f in listing if f["output"] == f"{name}.pts")
                         for name in ("turned", "upright_2"))
        roll = served.json("GET", f"/api/faces/{face}")["roll"]
        assert roll == pytest.approx(served.json("GET", f"/api/faces/{upright}")["roll"] - 90, abs=1e-6)
        page = Page(driver)
        driver.get(served.url)
        page.shown(faces[0])
        page.go_to(face, faces)
        assert page.view("roll") == roll and "upright: turned 92° counter-clockwise" in page.text("roll")

        def level(points: np.ndarray) -> None:  # on screen: eyes level, left to right, the nose and chin below
            screen = page.on_screen(points)
            right_eye, left_eye = screen[36:42].mean(0), screen[42:48].mean(0)
            across = left_eye[0] - right_eye[0]
            assert across > 0 and abs(left_eye[1] - right_eye[1]) < 0.01 * across
            assert right_eye[1] + 0.3 * across < screen[30][1] < screen[8][1]

        truth = read_pts(out / "turned.pts")
        assert np.ptp(truth[[39, 42], 1]) > 3 * np.ptp(truth[[39, 42], 0])  # in the photo: one eye above the other
        level(truth)

        # the thumbnails are upright too: the turned face's is the upright face's, not that turned by 90 degrees
        tiles = {f: cv2.imdecode(np.frombuffer(served.request("GET", f"/api/faces/{f}/thumb")[1], np.uint8), 1)
                 [:TILE].astype(float) for f in (face, upright)}
        same, turned_by_90 = (np.abs(tiles[face] - t).mean() for t in (tiles[upright], np.rot90(tiles[upright], -1)))
        assert same < 6 and same < turned_by_90 / 4, (same, turned_by_90)

        page.keys("1")  # 100%: a screen pixel is a photo pixel
        page.wait.until(lambda d: page.view("scale") == 1)
        page.drag(8, 12, -7)
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
        page.wait.until(lambda d: page.text("status").startswith("moved"))
        moved = read_pts(out / "turned.pts") - truth
        assert moved[8] == pytest.approx(photo_motion(roll, 12, -7), abs=6e-4)  # about (7, 12): turned back
        assert not np.delete(moved, 8, axis=0).any()

        page.keys("e")  # zoom to an eye: the subject's right eye, in the middle of the view, still level
        page.wait.until(lambda d: page.view("scale") > 2)
        eye = page.on_screen(truth[36:42])
        middle = driver.execute_script("const r = document.getElementById('view').getBoundingClientRect();"
                                       "return [r.left + r.width / 2, r.top + r.height / 2];")
        assert (eye.min(0) + eye.max(0)) / 2 == pytest.approx(middle, abs=2)
        level(read_pts(out / "turned.pts"))

        before = files_of(out)  # a point dragged far off the photo: the save is refused, and said so
        page.keys(*"-" * 60)  # zoomed out as far as the page goes: a screen pixel is 50 photo pixels
        page.wait.until(lambda d: page.view("scale") == 0.02)
        page.drag(67, 300, 0)
        page.keys(Keys.ENTER)
        page.wait.until(lambda d: page.text("message").startswith("not saved: points must be 68 [x, y] pairs"))
        assert "error" in driver.find_element("id", "message").get_attribute("class")
        assert page.view("roll") == roll and files_of(out) == before


def test_refit_on_the_page_fits_a_wrong_face_to_four_placed_points(turned, tmp_path):
    webdriver = browser_or_skip()
    from selenium.webdriver.common.keys import Keys

    out = copy_run(turned, "pts", tmp_path)
    truth = np.load(turned / "truth" / "turned.npy")
    laid_upright(out, truth)
    with serving(out) as served, chromium(webdriver) as driver:
        faces = [f["id"] for f in served.json("GET", "/api/faces")["faces"]]
        face = next(f["id"] for f in served.json("GET", "/api/faces")["faces"] if f["output"] == "turned.pts")
        page = Page(driver)
        driver.get(served.url)
        page.shown(faces[0])
        page.go_to(face, faces)
        network = page.points()
        assert network == pytest.approx(read_pts(out / "turned.pts"), abs=1e-9) and face_error(network, truth) > 0.3
        for i in PLACED:  # drag each to where it belongs, to the nearest screen pixel
            dx, dy = np.round(page.on_screen(truth[[i]])[0] - page.on_screen(network[[i]])[0]).astype(int)
            page.drag(i, int(dx), int(dy))
        placed = page.points()
        assert page.placed() == sorted(PLACED) and np.abs(placed[PLACED] - truth[PLACED]).max() < 1
        before_shot = driver.get_screenshot_as_png()
        saved = files_of(out)

        page.keys("t")
        page.wait.until(lambda d: page.text("message").startswith("refitted to the 4 points placed"))
        fitted = page.points()
        assert fitted[PLACED] == pytest.approx(placed[PLACED], abs=1e-9)  # kept where the person put them
        others = np.delete(np.arange(68), PLACED)
        assert np.linalg.norm(fitted[others] - placed[others], axis=1).min() > 1  # every other point moved
        assert face_error(fitted, truth) < 0.05 and face_error(fitted[others], truth[others]) < 0.05
        assert page.placed() == [] and files_of(out) == saved  # refitted on the page, nothing saved yet
        refit_picture(page, before_shot, truth, tmp_path)

        page.keys("z")  # undo takes the refit back as one step, placed marks and all
        page.wait.until(lambda d: page.placed() == sorted(PLACED))
        assert page.points() == pytest.approx(placed, abs=1e-9)
        page.keys("y", Keys.ENTER)  # redo, and save
        page.wait.until(lambda d: page.text("message").startswith("saved turned.pts: moved"))
        assert read_pts(out / "turned.pts") == pytest.approx(fitted, abs=6e-4)  # .pts: 3 decimals
        assert next(r for r in index_rows(out) if r["output"] == "turned.pts")["checked"] == "moved"


def refit_picture(page: Page, before: bytes, truth: np.ndarray, tmp_path: Path) -> None:
    """Before and after a refit, side by side around the face, captioned: written to docs/ with
    UPDATE_SCREENSHOT=1, else to tmp_path."""
    driver = page.driver
    after = driver.get_screenshot_as_png()
    screen = page.on_screen(truth)
    (x0, y0), (x1, y1) = screen.min(0) - 60, screen.max(0) + 60
    stage = driver.execute_script("const r = document.getElementById('stage').getBoundingClientRect();"
                                  "return [r.left, r.top, r.right, r.bottom];")
    x0, y0, x1, y1 = (int(v) for v in (max(x0, stage[0]), max(y0, stage[1]), min(x1, stage[2]), min(y1, stage[3])))
    halves = []
    for shot, caption in ((before, "before: the network's points; 4 dragged into place (blue)"),
                          (after, "after T: the other 64 points refitted")):
        image = cv2.imdecode(np.frombuffer(shot, np.uint8), 1)[y0:y1, x0:x1]
        strip = np.full((32, image.shape[1], 3), 32, np.uint8)
        cv2.putText(strip, caption, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (232, 232, 232), 1, cv2.LINE_AA)
        halves.append(np.vstack([strip, image]))
    picture = np.hstack([halves[0], np.full((halves[0].shape[0], 6, 3), 32, np.uint8), halves[1]])
    path = REFIT_PICTURE if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / REFIT_PICTURE.name
    assert cv2.imwrite(str(path), picture)


def test_requests_need_the_token_and_reach_nothing_but_the_run(runs, tmp_path):
    out = copy_run(runs, "pts", tmp_path)
    with serving(out) as served:
        face = served.json("GET", "/api/faces")["faces"][0]["id"]
        for path in ("/api/faces", f"/api/faces/{face}", f"/api/faces/{face}/photo"):
            assert served.request("GET", path, token=None)[0] == 403
            assert served.request("GET", path, token="wrong")[0] == 403
        current = served.json("GET", f"/api/faces/{face}")
        edit = {"base": current["version"], "action": "accept", "points": current["points"]}
        assert served.request("POST", f"/api/faces/{face}", edit, token=None)[0] == 403
        assert served.request("OPTIONS", f"/api/faces/{face}")[0] == 501  # no CORS preflight is ever granted
        for path in ("/static/../../../../etc/passwd", "/../faces.csv", "/faces.csv", "/static/%2e%2e/faces.csv",
                     f"/api/faces/{face}/../../faces.csv", "/api/faces/../../etc/passwd", "/static/index.html",
                     f"/api/faces/{face}/photo/../../../../etc/passwd", "/api/faces/0000000000000000"):
            status, body = served.request("GET", path)
            assert status == 404 and b"root:" not in body and b"input_path" not in body, path
        assert served.request("GET", "/")[0] == 200  # the page itself carries no data
        status, photo = served.request("GET", f"/api/faces/{face}/photo")
        row = next(r for r in index_rows(out) if r["output"] == current["output"])
        assert status == 200 and cv2.imdecode(np.frombuffer(photo, np.uint8), 1).shape == \
            cv2.imread(row["input_path"]).shape  # the photo decoded as the run did, sent as JPEG
        for bad in ({"base": current["version"], "action": "accept", "points": [[0, 0]] * 67},
                    {"base": current["version"], "action": "delete"}):
            assert served.request("POST", f"/api/faces/{face}", bad)[0] == 400
        assert served.request("POST", f"/api/faces/{face}", {**edit, "base": "stale"})[0] == 409

        run = annotate(runs / "photos", "--out", out, check=False)
        assert run.returncode == 1 and run.stderr.count("\n") == 1
        assert f"{out} is in use by another annotate review server (pid {served.proc.pid} on " in run.stderr
        with pytest.raises(AssertionError, match="in use by another annotate review server"):
            with serving(out):
                pass
    assert outputs(out) == outputs(runs / "pts")  # nothing was saved


def test_saves_and_refits_of_nonsense_are_refused_and_write_nothing(runs, tmp_path):
    out = copy_run(runs, "pts", tmp_path)
    with serving(out) as served:
        face = served.json("GET", "/api/faces")["faces"][0]["id"]
        current = served.json("GET", f"/api/faces/{face}")
        path = out / current["output"]
        row = next(r for r in index_rows(out) if r["output"] == current["output"])
        height, width = cv2.imread(row["input_path"]).shape[:2]
        before = files_of(out)

        def changed(i: int, value: object) -> list:
            points = [list(p) for p in current["points"]]
            points[8][i] = value
            return points

        nonsense = {"booleans": [[True, False]] * 68, "1e308": changed(0, 1e308),
                    "a 400-digit integer": changed(0, 10 ** 400), "NaN": changed(1, math.nan),
                    "a string": changed(0, "12.5"), "null": changed(1, None),
                    "a triple": [p + [0] for p in current["points"]], "nested": [[p] for p in current["points"]],
                    "67 points": current["points"][:67], "no points": None,
                    "beyond the right": changed(0, 2 * width), "beyond the top": changed(1, -height - 1)}
        for what, points in nonsense.items():
            status, body = served.request("POST", f"/api/faces/{face}",
                                          {"base": current["version"], "action": "accept", "points": points})
            message = json.loads(body)["error"]
            assert status == 400 and message.startswith("not saved: points must be 68 [x, y] pairs of numbers"), what
            assert f"width ({width} px)" in message and f"height ({height} px)" in message
            if points is not None:
                status, body = served.request("POST", f"/api/faces/{face}/refit", {"points": points, "placed": [8]})
                assert status == 400 and json.loads(body)["error"].startswith("not refitted: points must be"), what
        for placed in ([True], [68], [-1], ["8"], [8.0], 8, None):
            status, body = served.request("POST", f"/api/faces/{face}/refit",
                                          {"points": current["points"], "placed": placed})
            assert status == 400 and "placed must be a list of point indices" in json.loads(body)["error"], placed
        for body in (b"[" * 60000, b'{"points": ' + b"1" * 5000 + b"}", b"\xff"):  # too deep, too long, not UTF-8
            connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=WAIT)
            connection.request("POST", f"/api/faces/{face}/refit", body, {"X-Annotate-Token": served.token})
            assert connection.getresponse().status == 400
            connection.close()
        assert files_of(out) == before  # byte for byte: the .pts, faces.csv, nothing kept aside

        # Just inside the margin is a save: a point may lie off the photo (a face cut by its edge)
        saved = served.json("POST", f"/api/faces/{face}", {"base": current["version"], "action": "accept",
                                                            "points": changed(0, 2 * width - 1)})
        assert read_pts(path)[8][0] == 2 * width - 1 and saved["checked"] == "moved"


def test_refit_answers_from_the_placed_points_and_saves_nothing(turned, tmp_path):
    out = copy_run(turned, "pts", tmp_path)
    truth = np.load(turned / "truth" / "turned.npy")
    laid_upright(out, truth)
    with serving(out) as served:
        face = next(f["id"] for f in served.json("GET", "/api/faces")["faces"] if f["output"] == "turned.pts")
        current = np.array(served.json("GET", f"/api/faces/{face}")["points"])
        before = files_of(out)
        start = current.copy()
        start[PLACED] = truth[PLACED]  # a person dragged these four to where they belong
        fitted = served.json("POST", f"/api/faces/{face}/refit", {"points": start.tolist(), "placed": PLACED})
        points = np.array(fitted["points"])
        assert fitted["placed"] == sorted(PLACED) and np.array_equal(points[PLACED], start[PLACED])  # exactly
        assert face_error(current, truth) > 0.3 and face_error(points, truth) < 0.04
        others = np.delete(np.arange(68), PLACED)
        assert face_error(points[others], truth[others]) < 0.05  # not just the placed points: all of them
        assert files_of(out) == before  # a refit is an answer, not a save


def test_a_json_face_marked_not_a_face_is_dropped_and_restored_in_place(runs, tmp_path):
    out = copy_run(runs, "json", tmp_path)
    path = out / "1130084326_1.json"
    with serving(out) as served:
        face = [f["id"] for f in served.json("GET", "/api/faces")["faces"] if f["output"] == path.name][1]
        box = served.json("GET", f"/api/faces/{face}")["box"]
        faces = json.loads(path.read_text())["faces"]
        gone = served.save(face, "not a face")
        assert not gone["present"] and [f["box"] for f in json.loads(path.read_text())["faces"]] == \
            [f["box"] for f in faces if f["box"] != box]
        back = served.save(face, "accept")  # the points shown, the run's own: as it was, marked checked
        assert back["present"] and back["moved_px"] == "0.000" and back["checked"] == "accepted"
        assert json.loads(path.read_text())["faces"] == [{**f, "checked": "accepted"} if f["box"] == box else f
                                                        for f in faces]
        served.save(face, "unusable")
        assert [f.get("checked") for f in json.loads(path.read_text())["faces"]] == \
            ["unusable" if f["box"] == box else None for f in faces]


def test_page_rings_the_points_the_network_is_least_sure_of(runs, tmp_path):
    """The JSON's per-point expected errors above UNSURE_POINT ring those points on the page, and only
    those (set here, so the test does not depend on which faces the shipped network doubts)."""
    webdriver = browser_or_skip()
    from selenium.webdriver.common.by import By
    from annotator.draw import UNSURE_POINT

    out = copy_run(runs, "json", tmp_path)
    with serving(out) as served, chromium(webdriver) as driver:
        face = served.json("GET", "/api/faces")["faces"][0]
        path = out / face["output"]
        record = json.loads(path.read_text())
        box = served.json("GET", f"/api/faces/{face['id']}")["box"]
        for f in record["faces"]:
            f["point_errors"] = [3 * UNSURE_POINT if i in (8, 30, 45) and f["box"] == box else UNSURE_POINT / 2
                                 for i in range(68)]
        path.write_text(json.dumps(record))
        assert served.json("GET", f"/api/faces/{face['id']}")["unsure"] == [8, 30, 45]
        driver.get(served.url)
        Page(driver).shown(face["id"], "not checked")
        ringed = [int(c.get_attribute("data-point")) for c in driver.find_elements(By.CSS_SELECTOR, "#view .unsure")]
        assert ringed == [8, 30, 45]
        assert driver.find_elements(By.CSS_SELECTOR, "#view .point")[8].value_of_css_property("stroke") != \
            driver.find_elements(By.CSS_SELECTOR, "#view .point")[9].value_of_css_property("stroke")


@pytest.mark.parametrize("fmt", ["pts", "json"])
def test_reruns_keep_checked_faces_unless_told(runs, tmp_path, fmt):
    out = copy_run(runs, fmt, tmp_path)
    with serving(out) as served:
        three = [f["id"] for f in served.json("GET", "/api/faces")["faces"] if f["image"] == "1130084326_1.jpg"]
        served.save(three[0], "accept", move=(3.5, -2))
        served.save(three[1], "not a face")
    checked = outputs(out)
    assert checked != outputs(runs / fmt)
    rows = index_rows(out)
    assert sorted(r["checked"] for r in rows if r["checked"]) == ["moved", "not a face"]

    listed = annotate("review", out, "--worst", "10", "--list").stdout.splitlines()
    assert len(listed) == 5 and all(line.endswith("\t") for line in listed)  # checked faces skipped
    listed = annotate("review", out, "--worst", "10", "--list", "--checked", "only").stdout.splitlines()
    assert sorted(line.split("\t")[-1] for line in listed) == ["moved", "not a face"]

    for again in ([], ["--overwrite"]):  # a resume, and a redo of every image: the checked image is kept
        result = annotate(runs / "photos", "--out", out, "--format", fmt, "-j", "1", *again)
        assert "1 kept: checked by a person" in result.stderr
        assert outputs(out) == checked and sorted(map(str, index_rows(out))) == sorted(map(str, rows))

    result = annotate(runs / "photos", "--out", out, "--format", fmt, "-j", "1", "--overwrite-checked", check=False)
    assert result.returncode == 2 and "--overwrite-checked goes with --overwrite" in result.stderr
    annotate(runs / "photos", "--out", out, "--format", fmt, "-j", "1", "--overwrite", "--overwrite-checked")
    assert outputs(out) == outputs(runs / fmt)  # the machine's points again, the removed face back
    assert not any(r["checked"] for r in index_rows(out))


@pytest.mark.parametrize("fmt", ["pts", "json"])
def test_moved_photos_are_followed_when_told_with_their_checks_and_never_replaced(runs, tmp_path, fmt):
    out, gone, here = copy_run(runs, fmt, tmp_path), tmp_path / "gone", tmp_path / "here"
    shutil.copytree(runs / "photos", gone)
    for log in (out / "faces.csv", out / f".annotate-done-{fmt}.log"):  # as if annotated from ``gone``
        log.write_text(log.read_text().replace(str(runs / "photos"), str(gone)))
    with serving(out) as served:
        face = served.json("GET", "/api/faces")["faces"][0]["id"]
        served.save(face, "accept", move=(3.5, -2))
    before, rows = outputs(out), index_rows(out)
    gone.rename(here)

    result = annotate(here, "--out", out, "--format", fmt, "-j", "1", check=False)
    assert result.returncode == 1 and result.stderr.count("which is gone: if the photos moved, rerun with "
                                                          "--photos-moved") == len(PHOTOS)
    assert outputs(out) == before and index_rows(out) == rows  # was: annotated again, over the checked face

    result = annotate(here, "--out", out, "--format", fmt, "-j", "1", "--photos-moved")
    assert f"{len(PHOTOS)} followed from where they were annotated" in result.stderr
    assert outputs(out) == before
    assert index_rows(out) == [r | {"input_path": r["input_path"].replace(str(gone), str(here))} for r in rows]
    assert "already done" in annotate(here, "--out", out, "--format", fmt, "-j", "1").stderr
    with serving(out) as served:  # the run's own points followed the face: moved_px still measured from them
        faces = served.json("GET", "/api/faces")["faces"]
        served.save(next(f["id"] for f in faces if f["checked"] == "moved"), "accept")
    assert [r["moved_px"] for r in index_rows(out) if r["checked"]] == [r["moved_px"] for r in rows if r["checked"]]

    shutil.copytree(here, tmp_path / "other")  # other photos with the same names, both folders there
    result = annotate(tmp_path / "other", "--out", out, "--format", fmt, "-j", "1", "--photos-moved", check=False)
    assert result.returncode == 1 and result.stderr.count("another photo: give another --out") == len(PHOTOS)
    assert outputs(out) == before


def test_a_face_saved_after_its_photo_was_edited_is_exported_again(runs, tmp_path):
    out, photos = copy_run(runs, "pts", tmp_path), tmp_path / "photos"
    shutil.copytree(runs / "photos", photos)
    (out / "faces.csv").write_text((out / "faces.csv").read_text().replace(str(runs / "photos"), str(photos)))
    photo = photos / f"{PHOTOS[0]}.jpg"
    cv2.imwrite(str(photo), cv2.rotate(cv2.imread(str(photo)), cv2.ROTATE_90_CLOCKWISE))  # turned in a photo tool
    result = annotate("export", out, "--to", "coco", "--out", tmp_path / "before.json")
    assert "1 on photos whose size changed since they were annotated" in result.stderr
    webdriver = browser_or_skip()
    with serving(out) as served, chromium(webdriver) as driver:  # a person places the points on the turned photo
        faces = served.json("GET", "/api/faces")["faces"]
        face = next(f["id"] for f in faces if f["image"] == photo.name)
        driver.get(served.url)
        page = Page(driver)
        page.shown(faces[0]["id"])  # the worst face first
        page.go_to(face, [f["id"] for f in faces])
        assert "the photo's size changed since these points were placed" in page.text("error")
        served.save(face, "accept", move=(40, 0))
        assert not served.json("GET", f"/api/faces/{face}")["photo_changed"]
    result = annotate("export", out, "--to", "coco", "--out", tmp_path / "after.json")
    assert "size changed" not in result.stderr
    assert len(json.loads((tmp_path / "after.json").read_text())["annotations"]) == len(index_rows(out))


def photo_motion(roll: float, dx: float, dy: float) -> np.ndarray:
    """The motion in the photo's pixels of a drag by (dx, dy) on a page that shows the face turned
    clockwise by ``roll`` degrees (upright): the screen motion turned back."""
    a = math.radians(roll)
    return np.array([dx * math.cos(a) + dy * math.sin(a), -dx * math.sin(a) + dy * math.cos(a)])


def screenshot(driver, tmp_path: Path) -> None:
    """The page as the README shows it: written to docs/ with UPDATE_SCREENSHOT=1, else to tmp_path."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "const images = [...document.querySelectorAll('#strip img')];"
        "return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0);"))
    path = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    assert driver.save_screenshot(str(path))
    assert cv2.imread(str(path)).shape[:2] == (driver.execute_script("return window.innerHeight"),
                                              driver.execute_script("return window.innerWidth"))


def browser_or_skip():
    """selenium's webdriver module, with Debian's chromium and chromedriver present; skipped without them
    (failed under CI, whose setup installs them)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("selenium")
    if missing:
        message = f"no browser to drive: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return webdriver


@contextmanager
def chromium(webdriver) -> Iterator:
    """Headless Chromium driven by Debian's chromedriver (named explicitly: no selenium-manager download)."""
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()
