"""The site's pages: home, login, my orders, the dashboard and the chat page
(views.py, templates/, static/)."""
