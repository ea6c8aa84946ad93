"""Splitting Matrix messages into IRC lines that fit IRC's 512-byte limit.

An IRC line is at most 512 bytes with its CRLF, and the server relays it to others with our
prefix in front (``:nick!user@host PRIVMSG #target :``), so the text of one line must fit in
what is left. :func:`max_text_bytes` computes that budget (assuming the longest host a server
may show when ours is unknown), and :func:`split_message` cuts a message into lines: at line
breaks first, then at the last space that fits, and never inside a UTF-8 sequence. Formatting
that is on at a cut is switched on again at the start of the next line.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

__all__ = ["LINE_LIMIT", "max_text_bytes", "split_message"]

LINE_LIMIT = 512
#: What a server may put in our prefix's host part when we do not know it (RFC 1035 name).
DEFAULT_HOST_LENGTH = 63


def max_text_bytes(
    nick: str,
    target: str,
    *,
    command: str = "PRIVMSG",
    user: str | None = None,
    host: str | None = None,
    ctcp_action: bool = False,
) -> int:
    """Bytes of text that fit in one line as others receive it."""
    user_len = len((user or "~" + nick[:10]).encode("utf-8"))
    host_len = len(host.encode("utf-8")) if host else DEFAULT_HOST_LENGTH
    overhead = (
        1 + len(nick.encode("utf-8")) + 1 + user_len + 1 + host_len  # :nick!user@host
        + 1 + len(command) + 1 + len(target.encode("utf-8")) + 2  # ' PRIVMSG #t :'
        + 2  # CRLF
    )
    if ctcp_action:
        overhead += len("\x01ACTION \x01")
    return max(16, LINE_LIMIT - overhead)


_TOGGLES = "\x02\x11\x1d\x1e\x1f"


def _open_codes(text: str) -> str:
    """The toggles still on at the end of ``text`` (colours are not carried over)."""
    state = {c: False for c in _TOGGLES}
    for ch in text:
        if ch in state:
            state[ch] = not state[ch]
        elif ch == "\x0f":
            state = {c: False for c in _TOGGLES}
    return "".join(c for c in _TOGGLES if state[c])


def _cut(line: str, limit: int) -> list[str]:
    out: list[str] = []
    carry = ""
    rest = line
    while rest:
        rest = carry + rest
        if len(rest.encode("utf-8")) <= limit:
            out.append(rest)
            break
        # The longest prefix of whole characters that fits.
        size = 0
        end = 0
        for i, ch in enumerate(rest):
            n = len(ch.encode("utf-8"))
            if size + n > limit:
                break
            size += n
            end = i + 1
        space = rest.rfind(" ", len(carry) + 1, end + 1)
        if space > len(carry) and space >= end // 2:
            piece, rest = rest[:space], rest[space + 1 :]
        else:
            piece, rest = rest[:end], rest[end:]
        out.append(piece)
        carry = _open_codes(piece)
    return out


def split_message(text: str, limit: int) -> list[str]:
    """IRC lines of at most ``limit`` UTF-8 bytes each for ``text``; empty lines dropped."""
    if limit < 8:
        raise ValueError("limit too small")
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        raw = raw.replace("\x00", "")
        if not raw.strip():
            continue
        lines.extend(p for p in _cut(raw, limit) if p)
    return lines
