"""agenttrail.kafka"""
