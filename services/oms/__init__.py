"""OMS validation: buying power, account status and permissions, eligibility, restrictions."""
