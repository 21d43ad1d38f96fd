#!/usr/bin/env bash
# Apache Kafka 4.x in KRaft mode (one combined broker + controller) on 127.0.0.1, from Maven Central jars.
# usage: kafka.sh install|start|stop|wipe|status      env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093)
source "$(dirname "$0")/lib.sh"
KAFKA_VERSION=4.1.0
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
DATA="$VAR_DIR/kafka/data"
CONF="$VAR_DIR/kafka/server.properties"
JAVA="${JAVA:-java}"

install() {
  [[ -f "$LIBS/.complete" ]] && return 0
  log "downloading Kafka $KAFKA_VERSION jars from Maven Central into $LIBS (first run only)"
  mkdir -p "$LIBS"
  mvn -q -B -f "$ROOT/deploy/local/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete"
}

write_config() {
  mkdir -p "$DATA"
  cat > "$CONF" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
CONF
  cat > "$VAR_DIR/kafka/log4j2.yaml" <<'L4J'
Configuration:
  Appenders:
    Console: {name: STDOUT, PatternLayout: {pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {level: WARN, AppenderRef: [{ref: STDOUT}]}
    Logger:
      - {name: kafka.server.KafkaRaftServer, level: INFO}
      - {name: kafka.server.BrokerServer, level: INFO}
L4J
}

start() {
  if is_running kafka; then log "already running on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  install
  write_config
  if [[ ! -f "$DATA/meta.properties" ]]; then
    log "formatting KRaft storage in $DATA"
    "$JAVA" -cp "$LIBS/*" -Dlog4j2.configurationFile="$VAR_DIR/kafka/log4j2.yaml" kafka.tools.StorageTool \
      format --standalone -t "$("$JAVA" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)" \
      -c "$CONF" >>"$VAR_DIR/log/kafka.log" 2>&1
  fi
  start_bg kafka "$JAVA" -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$VAR_DIR/kafka/log4j2.yaml" -cp "$LIBS/*" kafka.Kafka "$CONF"
  wait_port kafka "$KAFKA_PORT" 120
  log "ready on 127.0.0.1:$KAFKA_PORT"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_bg kafka; log "stopped" ;;
  wipe) stop_bg kafka; rm -rf "$VAR_DIR/kafka"; log "data wiped" ;;
  status) if is_running kafka && port_open "$KAFKA_PORT"; then echo "kafka up 127.0.0.1:$KAFKA_PORT"; else echo "kafka down"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|wipe|status" >&2; exit 2 ;;
esac
