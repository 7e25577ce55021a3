"""The steps the actions run: each reads through the adapters, decides with the model, acts
only if needed and reports what changed. One function per action (remedy.identify, ...)."""
