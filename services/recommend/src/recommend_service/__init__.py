"""Recommend service: matches support programmes to businesses (R-REC); learns businesses from identity events."""
