"""Import screens: background import runs and the django-import-export preview flow."""
