"""The long-running reconciler's values: one pass as a value, and when a notification is
due."""
