from reconciler.cli import program

program()
