"""Rendering: heat-map overlays and PNG bytes (overlay), static matplotlib figures (figures, figure_cra,
figure_utils) and interactive plotly plots (plots). Nothing here computes a map; it only draws one."""
