// Package monitoring holds the tests of config/prometheus: the ServiceMonitors, the
// PrometheusRule and the Grafana dashboard parse, select the metrics Services, and use only
// metric names that kaudit exports; every alert links to its section of docs/monitoring.md.
//
// It ships nothing: the package exists for its tests, and no binary imports it.
package monitoring
