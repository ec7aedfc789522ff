"""Find: turn request lines into a verdict and ranked suspects. Analysis,
the HTML report, the audit (an app driven under load in a child gunicorn),
the soak that drives it, the adaptive stopping rule, and the demo. Reads logs
and drives servers; the serving path never imports it."""
