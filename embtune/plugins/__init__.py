"""Fine-tuning methods: the plugin interface, the registry, and one module per built-in method."""
