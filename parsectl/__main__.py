from parsectl.cli.main import app

app()
