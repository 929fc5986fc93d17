"""Pure numpy/scikit-image statistics. Never imports matplotlib, jinja2, the report package or Keras."""
