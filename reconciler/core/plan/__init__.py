"""Planning: desired state + registry state -> a Plan (a value); saved plans."""
