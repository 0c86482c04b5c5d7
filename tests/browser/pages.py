"""What the browser tests ask of a page: axe-core's verdict, horizontal overflow, the file a
request uploaded, and the sentences the page is expected to say."""

from email import policy
from email.parser import BytesParser
from importlib import resources
from typing import Any

from playwright.sync_api import Page, Request

# axe-core as shipped by the PyPI package axe-playwright-python (only its axe.min.js is used).
AXE_JS = (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")
SERIOUS = {"serious", "critical"}


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    # evaluate() is not subject to the page's Content-Security-Policy; a <script> tag would be.
    page.evaluate(AXE_JS)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in SERIOUS
    ]


def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0: no horizontal scroll)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


def uploaded_file(request: Request) -> bytes:
    """The first file of a multipart/form-data request, as the server receives it."""
    body = request.post_data_buffer
    assert body is not None, "the request carried no body"
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=policy.default).parsebytes(head + body)
    part = next(message.iter_parts())
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data
