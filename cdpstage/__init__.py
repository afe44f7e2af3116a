"""CDP Stage: stage, review, approve and ship customer data to the Sitecore CDP Batch API."""
