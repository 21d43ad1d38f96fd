"""The dispatch service's use cases, one file each; every HTTP handler is a few lines: authorise, call the aggregate
(domain.dispatch) through `Store.change`, answer."""
