"""Identity service: who someone is and what they may do (accounts, businesses, organisations, clients)."""
