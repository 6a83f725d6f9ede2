"""agenttrail.sinks"""
