"""agenttrail.producers"""
