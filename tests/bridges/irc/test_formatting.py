"""mIRC formatting <-> Matrix HTML (ruma.bridges.irc.formatting)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.bridges.irc.formatting import html_to_irc, irc_to_html, strip_irc_formatting


class IrcToHtmlTests(SynchronousTestCase):
    def test_plain_text_has_no_html(self) -> None:
        """A message without codes gives only a body (no formatted_body)."""
        self.assertEqual(irc_to_html("just words <3"), ("just words <3", None))

    def test_bold_italic_underline_strike_mono(self) -> None:
        """Each toggle becomes its tag; the body has the codes stripped."""
        body, html = irc_to_html("\x02b\x02 \x1di\x1d \x1fu\x1f \x1es\x1e \x11m\x11")
        self.assertEqual(body, "b i u s m")
        self.assertEqual(html, "<b>b</b> <i>i</i> <u>u</u> <del>s</del> <code>m</code>")

    def test_colours_and_reset(self) -> None:
        """\\x03NN,MM maps to the palette; \\x0f ends everything."""
        body, html = irc_to_html("\x0304,01red on black\x0f plain \x02\x0312blue bold")
        self.assertEqual(body, "red on black plain blue bold")
        assert html is not None
        self.assertIn('<font data-mx-color="#ff0000" data-mx-bg-color="#000000">red on black'
                      "</font>", html)
        self.assertIn(" plain ", html)
        self.assertIn('<font data-mx-color="#0000fc"><b>blue bold</b></font>', html)

    def test_hex_colour(self) -> None:
        """\\x04RRGGBB is kept as the hex colour."""
        _, html = irc_to_html("\x04AABBCCx")
        self.assertEqual(html, '<font data-mx-color="#aabbcc">x</font>')

    def test_html_is_escaped(self) -> None:
        """IRC text cannot inject HTML: markup in it is escaped, only our tags are live."""
        _, html = irc_to_html('\x02<script>alert("x")</script> & <b>\x02')
        self.assertEqual(html, '<b>&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;b&gt;</b>')

    def test_unknown_colour_numbers_are_ignored(self) -> None:
        """Colours beyond the 16 of the palette give no colour, not an error."""
        body, html = irc_to_html("\x0377odd")
        self.assertEqual(body, "odd")
        self.assertIsNone(html)


class HtmlToIrcTests(SynchronousTestCase):
    def test_toggles(self) -> None:
        """b/strong, i/em, u, del/s, code become the mIRC toggles."""
        self.assertEqual(
            html_to_irc("<b>b</b> <em>i</em> <u>u</u> <del>d</del> <code>c</code>"),
            "\x02b\x02 \x1di\x1d \x1fu\x1f \x1ed\x1e \x11c\x11",
        )

    def test_nested_same_tag_toggles_once(self) -> None:
        """<b>a<strong>b</strong>c</b> is bold throughout: no toggle in the middle."""
        self.assertEqual(html_to_irc("<b>a<strong>b</strong>c</b>"), "\x02abc\x02")

    def test_colour_nearest_palette_and_restore(self) -> None:
        """A font colour maps to the nearest mIRC colour; closing it restores the outer one."""
        text = html_to_irc('<font data-mx-color="#fe0101">r<font data-mx-color="#0000fc">b'
                           "</font>r</font>x")
        self.assertEqual(text, "\x0304r\x0312b\x0304r\x03x")

    def test_reply_fallback_dropped_and_links_kept(self) -> None:
        """mx-reply is not sent; links show their target; pills only the name."""
        text = html_to_irc(
            "<mx-reply><blockquote>quoted</blockquote></mx-reply>see "
            '<a href="https://example.org/x">this</a> and '
            '<a href="https://matrix.to/#/@bob:example.org">Bob</a>')
        self.assertEqual(text, "see this <https://example.org/x> and Bob")

    def test_blocks_and_lists(self) -> None:
        """Paragraphs, line breaks and lists become lines."""
        text = html_to_irc("<p>one</p><p>two<br>three</p><ul><li>a</li><li>b</li></ul>"
                           "<ol><li>x</li></ol><blockquote>q</blockquote>")
        self.assertEqual(text.split("\n"), ["one", "two", "three", "• a", "• b", "1. x", "> q"])

    def test_no_line_smuggling(self) -> None:
        """Carriage returns and NULs in HTML text never reach IRC (no command injection)."""
        text = html_to_irc("hi\r QUIT :x\x00<br>there")
        self.assertNotIn("\r", text)
        self.assertNotIn("\x00", text)

    def test_round_trip(self) -> None:
        """IRC -> HTML -> IRC keeps the text and the formatting's meaning."""
        _, html = irc_to_html("a \x02bold\x02 and \x1ditalic\x1d")
        assert html is not None
        back = html_to_irc(html)
        self.assertEqual(strip_irc_formatting(back), "a bold and italic")
        self.assertEqual(back, "a \x02bold\x02 and \x1ditalic\x1d")
