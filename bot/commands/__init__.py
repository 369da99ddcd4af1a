"""The slash commands, one cog per command or command group (loaded through bot.features)."""
