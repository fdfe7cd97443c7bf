import base64
import re

from PIL import Image

from harness.reporting.html import render_html

REPORT = """# my_study

> Does it work?

## Results

| arm | acc (%) |
|---|---|
| a | 91.0 |
| b <i>x</i> | 80.0 |

1. **Data**: [class counts](counts.png), [the summary](summary.json), see `data/overview.json`
2. Runs:
   - [`abc123`](http://127.0.0.1:5000/#/experiments/1/runs/abc123), 2026-01-01
   - *pruned* one

![Class counts](counts.png)

![Outside](../secret.png)

<details><summary>child runs</summary>

- `x<y`

</details>
"""


def _report(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    Image.new("RGB", (4, 3), "red").save(folder / "counts.png")
    Image.new("RGB", (2, 2), "blue").save(tmp_path / "secret.png")
    (folder / "summary.json").write_text("{}")
    (folder / "README.md").write_text(REPORT)
    return folder


def test_the_html_page_embeds_the_reports_images_as_data_uris(tmp_path):
    page = render_html(_report(tmp_path)).read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    decoded = base64.b64decode(sources[0].split(",", 1)[1])
    assert decoded == (tmp_path / "report" / "counts.png").read_bytes()


def test_an_image_outside_the_report_folder_is_not_read(tmp_path):
    page = render_html(_report(tmp_path)).read_text()
    assert "../secret.png" in page and "not in the report" in page
    assert base64.b64encode((tmp_path / "secret.png").read_bytes()).decode() not in page


def test_links_to_figures_jump_on_the_page_other_report_files_are_plain_text_web_links_stay(tmp_path):
    page = render_html(_report(tmp_path)).read_text()
    hrefs = re.findall(r'href="([^"]+)"', page)
    assert hrefs == ["#file-counts-png", "http://127.0.0.1:5000/#/experiments/1/runs/abc123"]
    assert 'id="file-counts-png"' in page
    assert "the summary</span>" in page  # summary.json would 404 inside MLflow's artifact viewer


def test_tables_lists_headings_and_code_become_html_and_stray_markup_is_escaped(tmp_path):
    page = render_html(_report(tmp_path)).read_text()
    assert "<title>my_study</title>" in page and '<h2 id="results">Results</h2>' in page
    assert "<th>arm</th><th>acc (%)</th>" in page and "<td>91.0</td>" in page
    assert "<td>b &lt;i&gt;x&lt;/i&gt;</td>" in page  # only the report's own <details> tags pass through
    assert "<ol><li><strong>Data</strong>" in page and "<ul><li><a href" in page  # the indented list nests
    assert "<li>Runs:<ul><li><a href" in page  # CommonMark nests a list indented to the item's text
    assert "<em>pruned</em>" in page and "<code>data/overview.json</code>" in page and "<code>x&lt;y</code>" in page
    assert "<details><summary>child runs</summary>" in page and "</details>" in page
    assert "<blockquote><p>Does it work?</p></blockquote>" in page


def _page(tmp_path, text):
    Image.new("RGB", (4, 3), "red").save(tmp_path / "my fig.png")
    (tmp_path / "README.md").write_text(text)
    return render_html(tmp_path).read_text()


def test_a_github_table_with_aligned_columns_and_inline_markup_becomes_a_table(tmp_path):
    page = _page(tmp_path, "| arm | acc |\n|:---|---:|\n| **a** | `91.0` |\n| b \\| c | 80.0 |\n")
    assert "<table><thead><tr>" in page and "</tbody></table>" in page
    assert '<td style="text-align:right"><code>91.0</code></td>' in page
    assert '<td style="text-align:left"><strong>a</strong></td>' in page and "b | c</td>" in page


def test_the_page_is_self_contained_and_raw_html_other_than_details_is_escaped(tmp_path):
    page = _page(tmp_path, "# t\n\n![fig](<my fig.png>) ![web](https://example.com/a.png)\n\n"
                           "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n")
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    assert 'id="file-my-fig-png"' in page and "[image https://example.com/a.png not in the report]" in page
    assert "<script" not in page and "&lt;script&gt;" in page and "&lt;img src=x" in page
    assert "<link" not in page and "@import" not in page


def test_headings_get_ids_that_anchors_reach_and_links_to_other_markdown_files_are_plain_text(tmp_path):
    page = _page(tmp_path, "# t\n\n## The six steps\n\nSee [the steps](#the-six-steps), "
                           "[the figure](<my fig.png>) and [another report](../other/README.md).\n\n"
                           "![fig](<my fig.png>)\n\n```\nx < y\n```\n")
    assert '<h2 id="the-six-steps">The six steps</h2>' in page
    assert re.findall(r'href="([^"]+)"', page) == ["#the-six-steps", "#file-my-fig-png"]
    assert '<span title="../other/README.md (a report file)">another report</span>' in page
    assert "<pre><code>x &lt; y\n</code></pre>" in page
