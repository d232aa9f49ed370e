"""Report: a store's run as one self-contained HTML page a person can read offline.

Takes a store (read-only) and the plan its run compiled; gives report.html with the
eligibility counts, the attrition, value distributions against thresholds, every note with
its highlighted evidence, and per patient a timeline of notes and windows.

- html: gathers the run's rows and renders the page (templates/report.html.j2);
- timeline: each patient's notes, evidence and windows as a small SVG.
"""
