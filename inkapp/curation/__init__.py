"""The browser-free curation workflow: analysis, domain routing, uploads, the model hub,
write actions with authorisation, retraining and candidate comparison. Never imports Gradio."""
