"""Money: /api/v1/balance, /api/v1/prices and the admin routes that add credit and set prices."""
