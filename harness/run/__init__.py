"""One run, top to bottom: config -> data -> model -> train -> score -> record."""
