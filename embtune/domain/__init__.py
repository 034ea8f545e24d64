"""Pure logic: task states, allowed transitions, retry policy, value objects."""
