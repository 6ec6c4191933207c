from payrail.cli import app

app()
