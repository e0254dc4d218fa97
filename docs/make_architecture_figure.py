"""Draw docs/images/architecture.svg: clipcrop's stages in flow order, the modules of each, the
model/ boundary, the separate trainer package and the shared leaf modules.

Run ``python docs/make_architecture_figure.py`` after moving a module between stages; the stage
of every module is checked against tests/test_layers.py by the docs tests, the picture is not,
so keep the two in step by hand. Plain SVG text, no dependencies: GitHub renders it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

OUT = Path(__file__).resolve().parent / "images" / "architecture.svg"

W, H = 1280, 712
BOX_W, BOX_H = 208, 136
GAP = 40
LEFT = 40
ROW_Y = (30, 240, 450)  # model/trainer row, the flow's first row, the flow's second row
INK, MUTED, ARROW = "#1f2933", "#52606d", "#3e4c59"


@dataclass
class Stage:
    """One box: a stage of the flow and the modules in it."""

    number: str
    name: str
    job: str
    modules: tuple[str, ...]
    fill: str
    x: int = 0
    y: int = 0


def col(i: int) -> int:
    return LEFT + i * (BOX_W + GAP)


FLOW1 = [
    Stage("0", "file", "what is a photo, what is ignored", ("photofiles.py",), "#e3f2fd"),
    Stage("1", "image", "upright RGB working copy", ("imaging.py", "raw.py", "heif.py"), "#e3f2fd"),
    Stage("2", "subjects/candidates", "faces, people, salient region; GAIC grid and ratio sets",
          ("subjects.py", "candidates.py"), "#e8f5e9"),
    Stage("4", "scorer + guard", "score every candidate, then keep the subjects in frame",
          ("scoring/", "suggest.py", "workers.py", "guard.py"), "#fff8e1"),
    Stage("5", "store", "photos, runs, crops, labels, models; settle rules",
          ("store/", "settle.py", "(migrations/)"), "#fce4ec"),
]
FLOW2 = [  # drawn right to left, under the first row
    Stage("6", "metadata", "XMP sidecars and embedding, cropped copies, previews",
          ("xmp/", "export.py", "preview.py"), "#f3e5f5"),
    Stage("7", "jobs", "record + publish a scored photo, the one way; scan, queue",
          ("jobs.py", "scan.py", "taskqueue.py"), "#ede7f6"),
    Stage("8", "daemon / api", "the folder watcher; the Library facade for hosts",
          ("daemon/", "api.py"), "#e0f2f1"),
    Stage("9", "server / cli", "clipcrop serve (FastAPI, review page); click commands",
          ("server/", "cli/"), "#e0f7fa"),
]
MODEL = Stage("3", "model", "the CLIPCropping network; torch lives here only",
              ("model/",), "#fff3e0")
TRAINER = Stage("10", "trainer", "a separate package: stages 1-3, evaluation, personalization",
                ("trainer/", "clipcrop-train"), "#efebe9")
USERS = Stage("", "you", "the photographer at the terminal or the review page; host applications",
              ("clipcrop", "Library", "hooks"), "#ffffff")
SHARED = ("errors", "results", "elements", "config", "hashing", "hooks", "safeio", "extras", "notices",
          "xmp/atomic")


def place() -> None:
    for i, s in enumerate(FLOW1):
        s.x, s.y = col(i), ROW_Y[1]
    for i, s in enumerate(FLOW2):
        s.x, s.y = col(4 - i), ROW_Y[2]
    MODEL.x, MODEL.y = col(3), ROW_Y[0]
    TRAINER.x, TRAINER.y = col(4), ROW_Y[0]
    USERS.x, USERS.y = col(0), ROW_Y[2]


def wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def box(s: Stage, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    out = [f'<rect x="{s.x}" y="{s.y}" width="{BOX_W}" height="{BOX_H}" rx="10" fill="{s.fill}" '
           f'stroke="{ARROW}" stroke-width="1.5"{dash}/>',
           f'<text x="{s.x + 12}" y="{s.y + 24}" class="title">{escape(f"{s.number} · {s.name}" if s.number else s.name)}</text>']
    y = s.y + 46
    for line in wrap(s.job, 30):
        out.append(f'<text x="{s.x + 12}" y="{y}" class="job">{escape(line)}</text>')
        y += 17
    y += 6
    # Two module names a line where they fit the box, else one.
    lines: list[str] = []
    for name in s.modules:
        if lines and len(lines[-1]) + 3 + len(name) <= 23:
            lines[-1] += "   " + name
        else:
            lines.append(name)
    for line in lines:
        out.append(f'<text x="{s.x + 12}" y="{y}" class="mod">{escape(line)}</text>')
        y += 18
    return "\n".join(out)


def arrow(x1: float, y1: float, x2: float, y2: float, label: str = "", dashed: bool = False,
          label_left: bool = False) -> str:
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    out = f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{ARROW}" stroke-width="2.2" marker-end="url(#head)"{dash}/>'
    if label:
        x, anchor = ((x1 + x2) / 2 - 8, "end") if label_left else ((x1 + x2) / 2 + 8, "start")
        out += f'\n<text x="{x}" y="{(y1 + y2) / 2 + 4}" class="note" text-anchor="{anchor}">{escape(label)}</text>'
    return out


def svg() -> str:
    place()
    mid = BOX_H / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
        "<style>"
        f".title{{font-size:14.5px;font-weight:bold;fill:{INK}}} .job{{font-size:12.5px;fill:{MUTED}}} "
        f".mod{{font-size:13px;font-family:DejaVu Sans Mono, Menlo, Consolas, monospace;fill:{INK}}} "
        f".note{{font-size:12.5px;fill:{MUTED};font-style:italic}} .head{{font-size:20px;font-weight:bold;fill:{INK}}}"
        "</style>",
        '<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{ARROW}"/></marker></defs>',
        f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="{ROW_Y[0] + 20}" class="head">clipcrop: one photo\'s way through the code</text>',
        f'<text x="{LEFT}" y="{ROW_Y[0] + 46}" class="job">Arrows point downstream. A module may import its own</text>',
        f'<text x="{LEFT}" y="{ROW_Y[0] + 64}" class="job">stage, the stages behind it and the shared modules,</text>',
        f'<text x="{LEFT}" y="{ROW_Y[0] + 82}" class="job">never a stage ahead (tests/test_layers.py walks every</text>',
        f'<text x="{LEFT}" y="{ROW_Y[0] + 100}" class="job">import). The store and the metadata stage take results,</text>',
        f'<text x="{LEFT}" y="{ROW_Y[0] + 118}" class="job">never the scorer or the model: no torch below the scorer.</text>',
    ]
    for s in FLOW1 + FLOW2:
        parts.append(box(s))
    parts.append(box(MODEL))
    parts.append(box(TRAINER, dashed=True))
    for a, b in zip(FLOW1, FLOW1[1:]):
        parts.append(arrow(a.x + BOX_W, a.y + mid, b.x - 3, b.y + mid))
    last = FLOW1[-1]
    parts.append(arrow(last.x + BOX_W / 2, last.y + BOX_H, FLOW2[0].x + BOX_W / 2, FLOW2[0].y - 3))
    for a, b in zip(FLOW2, FLOW2[1:]):
        parts.append(arrow(a.x, a.y + mid, b.x + BOX_W + 3, b.y + mid))
    # The model feeds the two CLIP scorers; the trainer uses the plugin, never the reverse.
    parts.append(arrow(MODEL.x + BOX_W / 2, MODEL.y + BOX_H, MODEL.x + BOX_W / 2, FLOW1[3].y - 3,
                       "CLIP scorers only", label_left=True))
    parts.append(arrow(TRAINER.x, TRAINER.y + mid, MODEL.x + BOX_W + 3, MODEL.y + mid, dashed=True))
    parts.append(arrow(TRAINER.x + BOX_W / 2, TRAINER.y + BOX_H, last.x + BOX_W / 2, last.y - 3,
                       "labels, model versions", dashed=True, label_left=True))
    # Who the flow ends at: people and host applications.
    parts.append(box(USERS, dashed=True))
    parts.append(arrow(FLOW2[-1].x, FLOW2[-1].y + mid, USERS.x + BOX_W + 3, USERS.y + mid))
    # The shared leaf modules: usable from every stage, importing none.
    y = ROW_Y[2] + BOX_H + 36
    parts.append(f'<rect x="{LEFT}" y="{y}" width="{W - 2 * LEFT}" height="52" rx="10" fill="#f5f7fa" '
                 f'stroke="{MUTED}" stroke-width="1.2"/>')
    parts.append(f'<text x="{LEFT + 12}" y="{y + 22}" class="title">shared by every stage (import no stage)</text>')
    parts.append(f'<text x="{LEFT + 12}" y="{y + 42}" class="mod">{escape("   ".join(SHARED))}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    """Write the figure next to the other docs images."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(svg(), encoding="utf-8")
    print(OUT)


if __name__ == "__main__":
    main()
