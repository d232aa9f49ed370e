"""Report: a store's run as an HTML page a person can read offline (one file, or a file and its pages folder).

Takes a store (read-only) and the plan its run compiled; gives report.html with the
eligibility counts, the attrition, value distributions against thresholds, every note with
its highlighted evidence, and per patient a timeline of notes and windows.

- html: gathers the run's figures and renders the page (templates/report.html.j2), and its pages folder;
- pages: the notes in natural id order, read from the store a page at a time, and the SQL aggregates;
- timeline: each patient's notes, evidence and windows as a small SVG.
"""
