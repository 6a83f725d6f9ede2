"""agenttrail.schemas"""
