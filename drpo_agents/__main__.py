"""``python -m drpo_agents`` runs the ``drpo`` command line."""

from drpo_agents.cli import main

main()
