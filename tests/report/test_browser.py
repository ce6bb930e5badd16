"""The build report and the audit report as a browser shows them (headless Chromium)."""

from __future__ import annotations

from tests.browser import needs_chromium, render


@needs_chromium
def test_build_report_and_audit_report_render_without_errors(demo_build, tmp_path):
    report = render(demo_build.build_dir / "report", tmp_path, "build-report", height=9000)
    page = (demo_build.build_dir / "report" / "index.html").read_text()
    assert report.images == page.count("<img ") > 24  # charts and 24 sample thumbnails
    assert report.broken == [] and report.errors == [], report.console
    assert report.screenshot.stat().st_size > 50_000
    audit = render(demo_build.audit_dir, tmp_path, "audit-report")
    assert audit.images > 0 and audit.broken == [] and audit.errors == [], audit.console


@needs_chromium
def test_a_missing_image_is_caught(tmp_path):
    """The check can fail: a report whose chart file is gone shows a broken image."""
    broken = tmp_path / "broken"
    (broken / "samples").mkdir(parents=True)
    (broken / "index.html").write_text(
        '<!DOCTYPE html><html><body><img src="funnel.png"><img src="samples/x.jpg"></body></html>'
    )
    shown = render(broken, tmp_path, "broken")
    assert shown.images == 2 and shown.broken == ["funnel.png", "samples/x.jpg"]
