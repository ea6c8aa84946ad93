"""mIRC formatting codes <-> Matrix ``formatted_body`` HTML, both ways.

IRC side: ``\\x02`` bold, ``\\x1d`` italic, ``\\x1f`` underline, ``\\x1e`` strikethrough,
``\\x11`` monospace, ``\\x16`` reverse, ``\\x03NN[,MM]`` colours (the 16 mIRC colours),
``\\x04RRGGBB[,RRGGBB]`` hex colours, ``\\x0f`` reset.

Matrix side: the HTML subset of the spec (``b strong i em u del s strike code pre font span
a br p blockquote ul ol li mx-reply``). Everything is escaped on the way out
(:func:`irc_to_html` never passes IRC text into HTML unescaped, and colours only come from the
palette), and on the way in only the tags above mean anything: every other tag is dropped,
its text kept.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from html.parser import HTMLParser

__all__ = ["IRC_COLOURS", "html_to_irc", "irc_to_html", "strip_irc_formatting"]

BOLD = "\x02"
COLOUR = "\x03"
HEX_COLOUR = "\x04"
RESET = "\x0f"
MONOSPACE = "\x11"
REVERSE = "\x16"
ITALIC = "\x1d"
STRIKE = "\x1e"
UNDERLINE = "\x1f"

#: The 16 standard mIRC colours, by number.
IRC_COLOURS: tuple[str, ...] = (
    "#ffffff", "#000000", "#00007f", "#009300", "#ff0000", "#7f0000", "#9c009c", "#fc7f00",
    "#ffff00", "#00fc00", "#009393", "#00ffff", "#0000fc", "#ff00ff", "#7f7f7f", "#d2d2d2",
)

_COLOUR_RE = re.compile(r"\x03(\d{1,2})?(?:,(\d{1,2}))?")
_HEX_RE = re.compile(r"\x04([0-9a-fA-F]{6})?(?:,([0-9a-fA-F]{6}))?")
_CONTROL = re.compile(r"[\x02\x0f\x11\x16\x1d\x1e\x1f]|\x03(\d{1,2}(,\d{1,2})?)?|"
                      r"\x04([0-9a-fA-F]{6}(,[0-9a-fA-F]{6})?)?")


@dataclass(frozen=True, slots=True)
class _Style:
    bold: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False
    mono: bool = False
    fg: str | None = None
    bg: str | None = None

    @property
    def plain(self) -> bool:
        return self == _PLAIN


_PLAIN = _Style()


def strip_irc_formatting(text: str) -> str:
    """``text`` without any mIRC control codes."""
    return _CONTROL.sub("", text)


def _palette(number: str | None) -> str | None:
    if number is None:
        return None
    n = int(number)
    return IRC_COLOURS[n] if 0 <= n < len(IRC_COLOURS) else None


def irc_to_html(text: str) -> tuple[str, str | None]:
    """``(plain body, formatted_body or None)`` for an IRC message.

    The HTML is None when the message carries no formatting (then ``body`` says it all)."""
    runs: list[tuple[_Style, str]] = []
    style = _PLAIN
    i = 0
    buf: list[str] = []

    def flush() -> None:
        if buf:
            runs.append((style, "".join(buf)))
            buf.clear()

    while i < len(text):
        ch = text[i]
        if ch in (BOLD, ITALIC, UNDERLINE, STRIKE, MONOSPACE, RESET, REVERSE):
            flush()
            if ch == BOLD:
                style = replace(style, bold=not style.bold)
            elif ch == ITALIC:
                style = replace(style, italic=not style.italic)
            elif ch == UNDERLINE:
                style = replace(style, underline=not style.underline)
            elif ch == STRIKE:
                style = replace(style, strike=not style.strike)
            elif ch == MONOSPACE:
                style = replace(style, mono=not style.mono)
            elif ch == RESET:
                style = _PLAIN
            elif ch == REVERSE:
                style = replace(style, fg=style.bg, bg=style.fg)
            i += 1
            continue
        if ch == COLOUR:
            flush()
            m = _COLOUR_RE.match(text, i)
            assert m is not None
            if m.group(1) is None:
                style = replace(style, fg=None, bg=None)
            else:
                fg = _palette(m.group(1))
                bg = _palette(m.group(2)) if m.group(2) is not None else style.bg
                style = replace(style, fg=fg, bg=bg)
            i = m.end()
            continue
        if ch == HEX_COLOUR:
            flush()
            m = _HEX_RE.match(text, i)
            assert m is not None
            if m.group(1) is None:
                style = replace(style, fg=None, bg=None)
            else:
                style = replace(
                    style,
                    fg="#" + m.group(1).lower(),
                    bg="#" + m.group(2).lower() if m.group(2) else style.bg,
                )
            i = m.end()
            continue
        buf.append(ch)
        i += 1
    flush()
    plain = "".join(t for _, t in runs)
    if all(s.plain for s, _ in runs):
        return plain, None
    out: list[str] = []
    for s, t in runs:
        piece = html.escape(t, quote=False)
        if s.mono:
            piece = f"<code>{piece}</code>"
        if s.strike:
            piece = f"<del>{piece}</del>"
        if s.underline:
            piece = f"<u>{piece}</u>"
        if s.italic:
            piece = f"<i>{piece}</i>"
        if s.bold:
            piece = f"<b>{piece}</b>"
        if s.fg or s.bg:
            attrs = ""
            if s.fg:
                attrs += f' data-mx-color="{s.fg}"'
            if s.bg:
                attrs += f' data-mx-bg-color="{s.bg}"'
            piece = f"<font{attrs}>{piece}</font>"
        out.append(piece)
    return plain, "".join(out).replace("\n", "<br>")


# -- HTML -> IRC ---------------------------------------------------------------------------

_TOGGLES = {
    "b": BOLD, "strong": BOLD, "i": ITALIC, "em": ITALIC, "u": UNDERLINE, "ins": UNDERLINE,
    "del": STRIKE, "s": STRIKE, "strike": STRIKE, "code": MONOSPACE,
}
_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "ul", "ol",
           "li", "tr", "table", "hr"}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def _nearest_colour(value: str | None) -> int | None:
    if not value:
        return None
    m = _HEX.match(value.strip())
    if m is None:
        return None
    rgb = int(m.group(1), 16)
    r, g, b = rgb >> 16, (rgb >> 8) & 0xFF, rgb & 0xFF
    best, best_d = 0, 1 << 30
    for n, hexc in enumerate(IRC_COLOURS):
        c = int(hexc[1:], 16)
        d = (r - (c >> 16)) ** 2 + (g - ((c >> 8) & 0xFF)) ** 2 + (b - (c & 0xFF)) ** 2
        if d < best_d:
            best, best_d = n, d
    return best


class _ToIrc(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.depth: dict[str, int] = {}
        self.colours: list[tuple[str, int | None, int | None] | None] = []
        self.skip = 0  # inside mx-reply (the reply fallback): dropped
        self.links: list[str | None] = []
        self.link_text: list[int] = []
        self.lists: list[list[int]] = []  # [ordered?, counter]
        self.quote = 0
        self.in_pre = 0

    def _newline(self) -> None:
        if self.out and not self.out[-1].endswith("\n"):
            self.out.append("\n")

    def _emit(self, text: str) -> None:
        if self.skip:
            return
        if self.quote and (not self.out or self.out[-1].endswith("\n")):
            self.out.append("> " * self.quote)
        self.out.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "mx-reply":
            self.skip += 1
            return
        if self.skip:
            return
        code = _TOGGLES.get(tag)
        if code is not None:
            n = self.depth.get(code, 0)
            self.depth[code] = n + 1
            if n == 0:
                self._emit(code)
            return
        if tag in ("font", "span"):
            fg = _nearest_colour(a.get("data-mx-color") or a.get("color"))
            bg = _nearest_colour(a.get("data-mx-bg-color"))
            if fg is None and bg is None:
                self.colours.append(None)
                return
            if fg is None:
                fg = 99  # "default" foreground, so a background can be given
            self.colours.append((tag, fg, bg))
            self._emit(COLOUR + f"{fg:02d}" + (f",{bg:02d}" if bg is not None else ""))
            return
        if tag == "br":
            self.out.append("\n")
            return
        if tag == "a":
            self.links.append(a.get("href"))
            self.link_text.append(len(self.out))
            return
        if tag == "img":
            alt = a.get("alt") or a.get("title") or ""
            src = a.get("src") or ""
            self._emit(alt if alt else src)
            return
        if tag in ("ul", "ol"):
            self._newline()
            self.lists.append([1 if tag == "ol" else 0, 0])
            return
        if tag == "li":
            self._newline()
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                self._emit(f"{self.lists[-1][1]}. ")
            else:
                self._emit("• ")
            return
        if tag == "blockquote":
            self._newline()
            self.quote += 1
            return
        if tag == "pre":
            self.in_pre += 1
        if tag in _BLOCKS:
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag == "mx-reply":
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        code = _TOGGLES.get(tag)
        if code is not None:
            n = self.depth.get(code, 0)
            if n > 0:
                self.depth[code] = n - 1
                if n == 1:
                    self._emit(code)
            return
        if tag in ("font", "span"):
            # Close the innermost colour of this tag, then restore the one around it.
            for idx in range(len(self.colours) - 1, -1, -1):
                entry = self.colours[idx]
                if entry is None or entry[0] == tag:
                    del self.colours[idx]
                    if entry is not None:
                        outer = next((c for c in reversed(self.colours) if c is not None), None)
                        if outer is None:
                            self._emit(COLOUR)
                        else:
                            self._emit(COLOUR + f"{outer[1]:02d}"
                                       + (f",{outer[2]:02d}" if outer[2] is not None else ""))
                    break
            return
        if tag == "a":
            href = self.links.pop() if self.links else None
            start = self.link_text.pop() if self.link_text else len(self.out)
            text = strip_irc_formatting("".join(self.out[start:])).strip()
            if href and href.startswith("https://matrix.to/#/"):
                return  # a pill: the display name is enough
            if href and text != href and not href.startswith("mailto:" + text):
                self._emit(f" <{href}>")
            return
        if tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._newline()
            return
        if tag == "blockquote":
            self.quote = max(0, self.quote - 1)
            self._newline()
            return
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)
        if tag in _BLOCKS:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.in_pre:
            data = re.sub(r"\s*\n\s*", " ", data) if "\n" in data else data
        # A Matrix user's text cannot smuggle IRC control characters or line breaks in.
        data = data.replace("\r", "").replace("\x00", "")
        if self.in_pre:
            for i, part in enumerate(data.split("\n")):
                if i:
                    self.out.append("\n")
                if part:
                    self._emit(part)
            return
        self._emit(data)


def html_to_irc(formatted_body: str) -> str:
    """IRC text with mIRC codes for a Matrix ``formatted_body`` (may hold newlines)."""
    parser = _ToIrc()
    parser.feed(formatted_body)
    parser.close()
    text = "".join(parser.out)
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    while lines and not strip_irc_formatting(lines[-1]).strip():
        lines.pop()
    while lines and not strip_irc_formatting(lines[0]).strip():
        lines.pop(0)
    return "\n".join(lines)
